"""Metrics by name: the longer-half BLEU scores exactly the sentences with the longer references."""

import pytest
from sacrebleu.metrics import BLEU

from mt import metrics

REFS = [
    "a cat",
    "the black cat ate the mouse in the garden",
    "a dog",
    "my sister bought a red car last week",
    "hello",
]


def test_bleu_long_scores_the_longer_half_by_reference_words():
    # right on the two long sentences, wrong on the short ones
    hyps = ["x y", REFS[1], "z w", REFS[3], "nope"]
    value, signature = metrics.get("bleu_long").compute(hyps, REFS, "en")
    assert value == pytest.approx(100.0) and signature.startswith("longer-half|")
    assert metrics.get("bleu").compute(hyps, REFS, "en")[0] < 100.0
    # and is sacreBLEU's BLEU of those sentences
    hyps[1] = "the black cat ate a mouse in a garden"
    expected = BLEU().corpus_score([hyps[1], hyps[3]], [[REFS[1], REFS[3]]]).score
    assert metrics.get("bleu_long").compute(hyps, REFS, "en")[0] == expected


def test_bleu_long_of_one_sentence_is_its_bleu():
    hyp, ref = "the black cat ate a mouse", "the black cat ate the mouse"
    expected = BLEU().corpus_score([hyp], [[ref]]).score
    assert metrics.get("bleu_long").compute([hyp], [ref], "en")[0] == expected

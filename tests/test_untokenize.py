"""Tokenized, lower-cased gold text read back as ordinary text, each word's characters kept."""

import pytest
import torch

from mt.translator import Translator
from mt.untokenize import untokenize

CASES = [
    (
        "fr",
        "je ne ai jamais lu le rapport de les commissaires à le sujet de le avenir de le canada",
        "Je n'ai jamais lu le rapport des commissaires au sujet de l'avenir du canada",
        {"ne": "n'", "ai": "ai", "les": "des", "à": "au", "avenir": "avenir"},
    ),
    (
        "fr",
        "le projet de loi C - 49 , présenté aujourd' hui , que il si elles ce est lui - même .",
        "Le projet de loi C-49, présenté aujourd'hui, qu'il si elles c'est lui-même.",
        {"aujourd'": "aujourd'", "hui": "hui", "-": "-", "que": "qu'", "ce": "c'", "C": "C"},
    ),
    (
        "en",
        "i think that it does n't ( really ) matter , mr. speaker .",
        "I think that it doesn't (really) matter, mr. speaker.",
        {"i": "I", "n't": "n't", "(": "(", "matter": "matter"},
    ),
]


@pytest.mark.parametrize("lang, tokenized, text, became", CASES)
def test_untokenize(lang, tokenized, text, became):
    words = tokenized.split()
    out = untokenize(words, lang)
    assert out.text == text
    assert len(out.spans) == len(words)
    for word, (begin, end) in zip(words, out.spans, strict=True):
        assert 0 <= begin < end <= len(out.text)
        if word in became:
            assert out.text[begin:end] == became[word]
    # the words stay in order: no span starts before the one of the word before it
    assert all(a[0] <= b[0] for a, b in zip(out.spans, out.spans[1:], strict=False))


def test_untokenize_fused_words_share_their_characters():
    out = untokenize(["de", "les"], "fr")
    assert out.text == "Des" and out.spans == [(0, 3), (0, 3)]
    assert untokenize(["chacun"], "fr", sentence_case=False).text == "chacun"
    assert untokenize([], "fr").text == ""


def test_align_untokenized(toy_run):
    t = Translator.load(toy_run, device="cpu")
    src = ["The", "black", "cat", "ate", "the", "mouse"]
    tgt = ["Le", "chat", "noir", "a", "mangé", "la", "souris"]
    # text that is already ordinary: the same pieces, so the same alignment
    (plain,) = t.align_words([src], [tgt])
    (read,) = t.align_words([src], [tgt], untokenize=True)
    assert read.source == src and read.target == tgt
    assert torch.allclose(read.weights, plain.weights, atol=1e-5)
    # lower-cased: read as the cased sentence it stands for, links given to the words as they are
    lower = [[w.lower() for w in src]], [[w.lower() for w in tgt]]
    (cased,) = t.align_words(*lower, untokenize=True)
    assert cased.source == lower[0][0] and cased.target == lower[1][0]
    assert torch.allclose(cased.weights, plain.weights, atol=1e-5)
    # two words written as one ("de les" -> "des") share that word's attention
    (fused,) = t.align_words(
        [src], [["Le", "chat", "noir", "a", "mangé", "de", "les", "souris"]], untokenize=True
    )
    assert torch.equal(fused.weights[5], fused.weights[6]) and fused.weights[5].sum() > 0

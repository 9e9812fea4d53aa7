"""sentencepiece models as mt trains them: the normalization rule (tokenizer.normalization)."""

from __future__ import annotations

import random

import pytest

from mt import pipeline, stages, tokenizer
from mt.run import RunError
from tests.conftest import toy_config

WORDS = [
    "the",
    "black",
    "cat",
    "dog",
    "ate",
    "saw",
    "a",
    "mouse",
    "big",
    "Straße",
    "Ein",
    "Mann",
    "geht",
    "auf",
    "der",
    "Fluss",
]


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(w.capitalize() if rng.random() < 0.3 else w for w in rng.choices(WORDS, k=6))
        for _ in range(n)
    ]


def trained(folder, normalization: str) -> tokenizer.Tokenizer:
    texts = sentences(400, seed=1)
    return tokenizer.train(
        lambda: iter(texts),
        lambda: iter(texts),
        folder,
        vocab_size=60,
        model_type="unigram",
        joint=True,
        character_coverage=1.0,
        max_sentences=10_000,
        seed=1,
        normalization=normalization,
    )


def test_a_lowercasing_tokenizer_reads_any_case_and_points_into_the_text_as_given(tmp_path):
    tok = trained(tmp_path / "cf", "nmt_nfkc_cf")
    text = "The BLACK Cat ate ein Mann auf der Straße"
    (ids,) = tok.encode_src([text])
    assert ids == tok.encode_src([text.lower()])[0]
    # lowercased, not case-folded: German ß stays (case folding would write "ss")
    assert tok.decode_tgt(ids) == "the black cat ate ein mann auf der straße"
    pieces = tok.src_pieces(ids[:-1])
    data = text.encode()
    for piece, (begin, end) in zip(pieces, tok.piece_spans([text], "src")[0], strict=True):
        assert data[begin:end].decode().strip().lower() == piece.lstrip("▁")

    cased, text = trained(tmp_path / "default", "nmt_nfkc"), "The Black Cat ate der Straße"
    assert cased.encode_src([text]) != cased.encode_src([text.lower()])
    assert cased.decode_tgt(cased.encode_src([text])[0]) == text


def test_the_normalization_is_part_of_the_cached_tokenizer_and_checked_first(tmp_path):
    keys = set()
    for normalization in ("nmt_nfkc", "nmt_nfkc_cf"):
        cfg = toy_config(tmp_path, f"tokenizer.normalization={normalization}")
        prepare_key, corpus = stages.prepare_stage(cfg)
        keys.add(stages.tokenize_stage(cfg, prepare_key, corpus)[0])
    assert len(keys) == 2
    with pytest.raises(RunError, match="tokenizer.normalization: unknown 'lower'"):
        pipeline.check_config(toy_config(tmp_path, "tokenizer.normalization=lower"))
    with pytest.raises(ValueError, match="tokenizer.normalization: unknown 'lower'"):
        trained(tmp_path / "bad", "lower")


def test_a_lowercased_run_writes_lowercase_and_eval_says_what_its_score_is(tmp_path, caplog):
    from mt.evaluate import evaluate_run

    cfg = toy_config(
        tmp_path,
        "tokenizer.normalization=nmt_nfkc_cf",
        "train.max_steps=40",
        "train.validate_every=40",
        "data.sizes.test=50",
    )
    run_dir = pipeline.train_pipeline(cfg)
    with caplog.at_level("WARNING", logger="mt.evaluate"):
        scores = evaluate_run(run_dir, device="cpu")["test"]
    hyps = (run_dir / "eval" / "test.hyp").read_text().splitlines()
    assert len(hyps) == 50 and any(h.strip() for h in hyps)
    assert all(h == h.lower() for h in hyps)  # the toy references all start with a capital
    assert "writes lowercase (tokenizer.normalization=nmt_nfkc_cf)" in caplog.text
    assert "tokenized-lowercased BLEU" in caplog.text
    assert scores["bleu_tok_lc"] >= scores["bleu"]

"""The Python API (`from mt import Translator`) and the CTranslate2 engine: the same translations
and alignments as mt's own decoding, from one interface."""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from mt import Translator
from mt.ct2 import ExportError, export
from mt.decoding import DecodeOptions
from mt.run import load_run
from mt.translator import TranslatorError
from tests.conftest import run_mt, toy_config

PROBE = "The black cat ate the mouse."
SENTENCES = [
    PROBE,
    "A dog saw a cat.",
    "The small bird ate the big mouse.",
    "The cat saw the black dog.",
    "",
    "A mouse ate the small black cat and the big dog saw the bird.",
]


@pytest.fixture(scope="module")
def translator(toy_run):
    return Translator.load(toy_run, device="cpu")


@pytest.fixture(scope="module")
def exported(toy_run, tmp_path_factory):
    """A copy of the toy run with its CTranslate2 export in <run>/ctranslate2."""
    copy = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(toy_run, copy, ignore=shutil.ignore_patterns("tb", "eval"))
    result = run_mt("export", "--run", str(copy), "--format", "ctranslate2")
    assert result.returncode == 0, result.stderr
    assert (copy / "ctranslate2" / "model.bin").exists() and (
        copy / "ctranslate2" / "spm.model"
    ).exists()
    return copy


def test_translate_returns_text_scores_and_nbest(translator):
    results = translator.translate(SENTENCES, beam=4, nbest=3)
    assert [r.source for r in results] == SENTENCES
    assert results[0].text == "Le chat noir a mangé la souris."
    for r in results[:4]:
        assert len(r.nbest) == 3 and (r.text, r.score) == (r.nbest[0].text, r.nbest[0].score)
        assert [c.score for c in r.nbest] == sorted((c.score for c in r.nbest), reverse=True)
        assert r.score < 0
    assert results[4].text == "" and results[4].score == 0.0
    greedy = translator.translate(SENTENCES, beam=1)
    cli = run_mt(
        "translate", "--run", str(translator.dir), "--beam", "1", *[s for s in SENTENCES if s]
    )
    assert cli.stdout.splitlines() == [r.text for r in greedy if r.source]


def test_align_gives_words_matrix_links_and_png(translator, tmp_path):
    a = translator.align(PROBE)
    assert a.translation == "Le chat noir a mangé la souris." and a.score < 0
    assert a.source == PROBE.split() and a.target == a.translation.split()
    assert tuple(a.weights.shape) == (7, 6)
    assert (1, 2) in a.links and (2, 1) in a.links  # chat -> cat, noir -> black: the crossing
    assert a.pharaoh() == " ".join(f"{i}-{j}" for i, j in a.links)
    forced = translator.align(PROBE, "Le chat noir a mangé une souris.")
    assert forced.translation == "Le chat noir a mangé une souris." and forced.target[5] == "une"
    a.save_png(tmp_path / "cat.png")
    assert (tmp_path / "cat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # translate(align=True) reads the same attention as align()
    assert translator.translate([PROBE], align=True)[0].alignment.links == a.links


def test_layer_and_head_apply_to_one_call(translator):
    model = translator.model.model
    before = model.align_layers, model.align_head
    one_head = translator.align(PROBE, layer=0, head=1)
    assert (model.align_layers, model.align_head) == before
    assert not one_head.weights.equal(translator.align(PROBE).weights)
    with pytest.raises(TranslatorError, match="layer 5: the decoder has 2 layers"):
        translator.align(PROBE, layer=5)
    assert (model.align_layers, model.align_head) == before


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.translate(PROBE), "give a list of strings"),
        (lambda t: t.translate([PROBE, 3]), "item 1 is not a string"),
        (lambda t: t.translate([PROBE], beam=0), "beam_size must be at least 1"),
        (lambda t: t.translate([PROBE], beam=2, nbest=3), "nbest 3 needs a beam of at least 3"),
        (lambda t: t.translate([PROBE], strategy="greedy", nbest=2), "needs strategy beam"),
        (lambda t: t.align("  "), "an empty sentence"),
        (lambda t: t.align(PROBE, ""), "an empty target"),
    ],
)
def test_bad_requests_are_named(translator, call, message):
    with pytest.raises(TranslatorError, match=message):
        call(translator)


def test_ctranslate2_matches_mt_token_for_token(exported, translator):
    fast = Translator.load(exported, engine="ctranslate2")
    for beam in (1, 4):
        ours = translator.translate(SENTENCES, beam=beam, nbest=1)
        theirs = fast.translate(SENTENCES, beam=beam, nbest=1)
        assert [t.text for t in theirs] == [t.text for t in ours]
        assert [t.score for t in theirs] == pytest.approx([t.score for t in ours], abs=1e-3)
    for target in (None, "Le chat noir a mangé une souris."):
        a, b = translator.align(PROBE, target, beam=1), fast.align(PROBE, target, beam=1)
        assert (a.translation, a.target, a.links) == (b.translation, b.target, b.links)
        assert (a.weights - b.weights).abs().max() < 1e-4
        # a forced target is scored by CTranslate2's score_batch, which does not renormalize
        # without <pad> and <s> as mt's search does: the scores differ in the third decimal
        assert b.score == pytest.approx(a.score, abs=1e-3 if target is None else 1e-2)
    # a translation cut at its length limit (3 tokens: two pieces, then only EOS) is cut alike
    short = DecodeOptions(strategy="greedy", beam_size=1, max_len_a=0.0, max_len_b=3)
    ours = [h[0].tokens for h in translator.model.translate(SENTENCES, short)]
    theirs = [h[0].tokens for h in fast.model.translate(SENTENCES, short)]
    assert theirs == ours and max(map(len, ours)) == 3
    result = run_mt(
        "translate", "--run", str(exported), "--engine", "ctranslate2", "--beam", "1", PROBE
    )
    assert result.stdout == "Le chat noir a mangé la souris.\n", result.stderr
    result = run_mt(
        "align", "--run", str(exported), "--engine", "ctranslate2", PROBE, "--layer", "0"
    )
    assert (
        result.returncode == 1 and "the ctranslate2 engine returns the attention" in result.stderr
    )


def test_int8_export_translates(exported, tmp_path):
    folder = export(load_run(exported, device="cpu"), tmp_path / "int8", "int8")
    fast = Translator.load(exported, engine="ctranslate2", export_dir=folder)
    assert fast.translate([PROBE], beam=1)[0].text == "Le chat noir a mangé la souris."


def test_export_errors(toy_rnn_run, exported, tmp_path):
    with pytest.raises(ExportError, match="only Transformer runs can be exported"):
        export(load_run(toy_rnn_run, device="cpu"), tmp_path / "rnn")
    result = run_mt("translate", "--run", str(toy_rnn_run), "--engine", "ctranslate2", PROBE)
    assert result.returncode == 1 and "holds no exported model: run `mt export" in result.stderr
    # a checkpoint newer than the export is noticed
    stale = tmp_path / "stale"
    shutil.copytree(exported, stale)
    best = stale / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes() + b"\0")
    with pytest.raises(ExportError, match="was exported from an earlier best.pt"):
        Translator.load(stale, engine="ctranslate2")
    # alignments that read the whole target cannot come from CTranslate2's step-by-step attention
    whole = tmp_path / "whole"
    shutil.copytree(exported, whole)
    cfg = OmegaConf.load(whole / "config.yaml")
    cfg.model.align_full_context = True
    OmegaConf.save(cfg, whole / "config.yaml")
    fast = Translator.load(whole, engine="ctranslate2")
    assert fast.translate([PROBE], beam=1)[0].text == "Le chat noir a mangé la souris."
    for call in (lambda: fast.align(PROBE), lambda: fast.align(PROBE, "Le chat noir.")):
        with pytest.raises(ExportError, match="whole target"):
            call()


def test_a_post_norm_run_trains_and_ctranslate2_scores_it_as_mt_does(toy_run, tmp_path):
    """model.norm=post end to end: trained, exported, and CTranslate2's log-probability of each
    target token (over the whole vocabulary) equal to mt's own."""
    import ctranslate2
    import torch

    from mt import pipeline
    from mt.tokenizer import BOS

    cfg = toy_config(
        tmp_path,
        f"cache_dir={toy_run.parent / 'cache'}",  # the toy run's corpus and tokenizer
        "model.norm=post",
        "train.max_steps=40",
        "train.validate_every=20",
        "train.dev_max_sentences=20",
    )
    run_dir = pipeline.train_pipeline(cfg)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert history[1]["dev_loss"] < history[0]["dev_loss"]
    run = load_run(run_dir, device="cpu")
    folder = export(run, tmp_path / "ct2")
    tok = run.tokenizer
    src = tok.encode_src([PROBE])[0]
    tgt = tok.encode_tgt(["Le chat noir a mangé la souris."])[0]  # ends in EOS
    with torch.no_grad():
        logits = run.model(torch.tensor([src]), torch.tensor([[BOS, *tgt[:-1]]]))[0]
    ours = logits[0].log_softmax(-1)[torch.arange(len(tgt)), torch.tensor(tgt)]
    scored = ctranslate2.Translator(str(folder)).score_batch(
        [tok.src_pieces(src)], [tok.tgt_pieces(tgt)[:-1]], max_input_length=0
    )
    assert scored[0].log_probs == pytest.approx(ours.tolist(), abs=1e-4)

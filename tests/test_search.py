"""Search over a trained toy model: greedy and beam agree where they must; n-best is ordered."""

import pytest
import torch

from mt import pipeline
from mt.batching import pad
from mt.search import beam_search, greedy_search


@pytest.fixture(scope="module")
def run(toy_run):
    return pipeline.load_run(toy_run, device="cpu")


@pytest.fixture(scope="module")
def sources(run):
    sentences = [
        "The black cat ate the mouse.",
        "A dog saw a white horse.",
        "The girl liked the red apple.",
        "A tired cow followed the boy.",
    ]
    return pad([torch.tensor(ids) for ids in run.tokenizer.encode_src(sentences)])


def test_toy_model_translates_with_reordering(toy_run):
    scores = pipeline.evaluate_run(toy_run, device="cpu")["test"]
    assert scores["bleu"] > 90 and scores["chrf"] > 90
    assert (toy_run / "eval" / "test.hyp").read_text().count("\n") == 200


def test_beam_size_one_equals_greedy(run, sources):
    greedy = greedy_search(run.model, sources, need_attn=True)
    beam = beam_search(run.model, sources, beam_size=1, need_attn=True)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)
        torch.testing.assert_close(g[0].attention, b[0].attention)
    assert run.tokenizer.decode_tgt(greedy[0][0].tokens) == "Le chat noir a mangé la souris."


def test_nbest_is_sorted_and_distinct(run, sources):
    hyps = beam_search(run.model, sources, beam_size=5, nbest=4)
    for nbest in hyps:
        assert len(nbest) == 4
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == 4


def test_batched_beam_search_equals_one_by_one(run, sources):
    together = beam_search(run.model, sources, beam_size=4, nbest=2)
    for i in range(sources.shape[0]):
        row = sources[i : i + 1]
        alone = beam_search(run.model, row[:, : int((row != 0).sum())], beam_size=4, nbest=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)


def test_max_length_is_respected(run, sources):
    for hyps in beam_search(run.model, sources, beam_size=3, max_len_a=0.0, max_len_b=3):
        assert len(hyps[0].tokens) <= 3


def test_rnn_beam_search_agrees_with_greedy_and_with_one_by_one(toy_rnn_run, sources):
    """The RNN's attention keys live in the memory, re-ordered only when sentences finish."""
    model = pipeline.load_run(toy_rnn_run, device="cpu").model
    greedy = greedy_search(model, sources)
    beam1 = beam_search(model, sources, beam_size=1)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam1]
    together = beam_search(model, sources, beam_size=4, nbest=2)
    for i in range(sources.shape[0]):
        row = sources[i : i + 1]
        alone = beam_search(model, row[:, : int((row != 0).sum())], beam_size=4, nbest=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)

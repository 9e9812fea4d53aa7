"""Search over a trained toy model: greedy and beam agree where they must; n-best is ordered."""

import pytest
import torch

from mt.batching import pad
from mt.decoding import DecodeOptions, beam_search, forced_decode, greedy_search, sample
from mt.decoding.sampling import choose_sample
from mt.evaluate import evaluate_run
from mt.run import load_run


@pytest.fixture(scope="module")
def run(toy_run):
    return load_run(toy_run, device="cpu")


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
    scores = evaluate_run(toy_run, device="cpu")["test"]
    assert scores["bleu"] > 90 and scores["chrf"] > 90
    assert (toy_run / "eval" / "test.hyp").read_text().count("\n") == 200


def test_beam_size_one_equals_greedy(run, sources):
    greedy = greedy_search(run.model, sources, DecodeOptions(), need_attn=True)
    beam = beam_search(run.model, sources, DecodeOptions(beam_size=1), need_attn=True)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-5)
        torch.testing.assert_close(g[0].attention, b[0].attention)
    assert run.tokenizer.decode_tgt(greedy[0][0].tokens) == "Le chat noir a mangé la souris."


def test_nbest_is_sorted_and_distinct(run, sources):
    hyps = beam_search(run.model, sources, DecodeOptions(beam_size=5, nbest=4))
    for nbest in hyps:
        assert len(nbest) == 4
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == 4


def test_batched_beam_search_equals_one_by_one(run, sources):
    together = beam_search(run.model, sources, DecodeOptions(beam_size=4, nbest=2))
    for i in range(sources.shape[0]):
        row = sources[i : i + 1]
        alone = beam_search(
            run.model, row[:, : int((row != 0).sum())], DecodeOptions(beam_size=4, nbest=2)
        )[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)


def test_max_length_is_respected(run, sources):
    for hyps in beam_search(
        run.model, sources, DecodeOptions(beam_size=3, max_len_a=0.0, max_len_b=3)
    ):
        assert len(hyps[0].tokens) <= 3


def test_rnn_beam_search_agrees_with_greedy_and_with_one_by_one(toy_rnn_run, sources):
    """The RNN's attention keys live in the memory, re-ordered only when sentences finish."""
    model = load_run(toy_rnn_run, device="cpu").model
    greedy = greedy_search(model, sources, DecodeOptions())
    beam1 = beam_search(model, sources, DecodeOptions(beam_size=1))
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam1]
    together = beam_search(model, sources, DecodeOptions(beam_size=4, nbest=2))
    for i in range(sources.shape[0]):
        row = sources[i : i + 1]
        alone = beam_search(
            model, row[:, : int((row != 0).sum())], DecodeOptions(beam_size=4, nbest=2)
        )[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)


def test_sampling_draws_from_the_model_and_obeys_top_k(run, sources):
    torch.manual_seed(0)
    options = DecodeOptions(strategy="sample", nbest=8, top_k=1)
    drawn = sample(run.model, sources, options)  # top-1 sampling is greedy search
    greedy = greedy_search(run.model, sources, DecodeOptions())
    for samples, g in zip(drawn, greedy, strict=True):
        assert len(samples) == 8 and all(s.tokens == g[0].tokens for s in samples)
        assert samples[0].score == pytest.approx(g[0].score, abs=1e-5)
    hot = sample(run.model, sources, DecodeOptions(strategy="sample", nbest=16, temperature=5.0))
    assert len({tuple(h.tokens) for h in hot[0]}) > 1  # a flat distribution gives different draws
    assert [h.score for h in hot[0]] == sorted((h.score for h in hot[0]), reverse=True)


def test_top_p_keeps_the_smallest_set_with_that_mass():
    log_probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    torch.manual_seed(0)
    picks = {int(choose_sample(log_probs, DecodeOptions(top_p=0.7))) for _ in range(200)}
    assert picks == {0, 1}  # 0.5 alone is short of 0.7; 0.5 + 0.3 reaches it


def test_forced_decoding_of_the_search_result_scores_as_search(run, sources):
    options = DecodeOptions(beam_size=4)
    found = beam_search(run.model, sources, options, need_attn=True)
    targets = pad([torch.tensor(h[0].tokens) for h in found])
    forced = forced_decode(run.model, sources, targets, options, need_attn=True)
    for f, h in zip(forced, found, strict=True):
        assert f[0].tokens == h[0].tokens
        assert f[0].score == pytest.approx(h[0].score, abs=1e-4)
        torch.testing.assert_close(f[0].attention, h[0].attention, atol=1e-4, rtol=1e-4)


def test_evaluation_is_reused_while_checkpoint_and_settings_agree(toy_run, caplog):
    caplog.set_level("INFO")
    hyp = toy_run / "eval" / "test.hyp"
    first = evaluate_run(toy_run, device="cpu")["test"]
    stamp = hyp.stat().st_mtime_ns
    again = evaluate_run(toy_run, device="cpu")["test"]
    assert again == first and hyp.stat().st_mtime_ns == stamp
    assert "same checkpoint and decoding settings, scores reused" in caplog.text
    other = evaluate_run(toy_run, beam_size=2, device="cpu")["test"]  # new settings: decoded again
    assert other["beam_size"] == 2 and hyp.stat().st_mtime_ns != stamp
    stamp = hyp.stat().st_mtime_ns
    alpha = evaluate_run(toy_run, beam_size=2, length_penalty=0.5, device="cpu")["test"]
    assert alpha["length_penalty"] == alpha["settings"]["length_penalty"] == 0.5
    assert hyp.stat().st_mtime_ns != stamp  # another length penalty: decoded again
    evaluate_run(toy_run, device="cpu")  # leave the run's own scores behind

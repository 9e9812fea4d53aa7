"""Alignments: subword merging, Pharaoh links, AER; trained toy models align "black cat" with
"chat noir" crosswise; heatmaps reach PNG files and TensorBoard."""

from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mt.alignment import Alignment, Reading, alignment_error_rate, parse_pharaoh, word_groups
from mt.evaluate import evaluate_run
from mt.run import load_run
from tests.conftest import run_mt

PROBE = "The black cat ate the mouse."


def test_subwords_merge_into_words():
    src = ["▁The", "▁bl", "ack", "▁cat", "</s>"]
    tgt = ["▁Le", "▁ch", "at", "▁noir", "</s>"]
    attention = torch.tensor(
        [
            [0.8, 0.1, 0.0, 0.1, 0.0],
            [0.0, 0.1, 0.1, 0.8, 0.0],
            [0.0, 0.0, 0.2, 0.6, 0.2],
            [0.0, 0.5, 0.4, 0.1, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    alignment = Alignment.from_subwords(src, tgt, attention)
    assert alignment.source == ["The", "black", "cat"] and alignment.target == [
        "Le",
        "chat",
        "noir",
    ]
    expected = torch.tensor([[0.8, 0.1, 0.1], [0.0, 0.2, 0.7], [0.0, 0.9, 0.1]])
    torch.testing.assert_close(alignment.weights, expected)
    assert alignment.pharaoh() == "0-0 2-1 1-2"
    assert word_groups(["a", "b", "▁c"]) == [[0, 1], [2]]


def test_mutual_links_keep_only_links_strongest_both_ways():
    # both target words attend most to source word 0, which attends most to target word 1
    weights = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.0, 0.0]])
    a = Alignment(["a", "b"], ["x", "y", "z"], weights)
    assert a.links == [(0, 0), (0, 1)]  # argmax: every target word that got attention
    assert replace(a, rule="mutual").links == [(0, 1)]
    with pytest.raises(ValueError, match="link rule 'best'"):
        replace(a, rule="best").hard()


def test_a_threshold_adds_every_link_that_weighs_enough():
    # mutual: 0-1 only; target word 0 also gives source word 0 0.6 and source word 1 0.4
    weights = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.0, 0.0]])
    a = Alignment(["a", "b"], ["x", "y", "z"], weights, rule="mutual")
    assert replace(a, threshold=0.5).links == [(0, 0), (0, 1)]
    assert replace(a, threshold=0.35).links == [(0, 0), (1, 0), (0, 1)]
    assert replace(a, threshold=0.0).links == a.links == [(0, 1)]
    # the reading carries it from a model config, checked
    reading = Reading.of(OmegaConf.create({"align_links": "mutual", "align_threshold": 0.5}))
    assert reading.words(replace(a, rule="argmax")).links == [(0, 0), (0, 1)]
    with pytest.raises(ValueError, match="link threshold 1.5"):
        Reading(threshold=1.5)


def test_grown_links_add_strong_neighbours_of_the_mutual_ones():
    # rows' strongest (source-target): 0-0, 0-1, 2-2, 2-3; columns' strongest: 0-0, 1-1, 2-2.
    # Mutual: 0-0, 2-2. grow-diag adds 0-1 and 1-1 (neighbours of 0-0 aligning target word 1 and
    # source word 1) and 2-3 (a neighbour of 2-2 aligning target word 3).
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.1, 0.7]])
    a = Alignment(["a", "b", "c"], ["w", "x", "y", "z"], weights)
    assert replace(a, rule="mutual").links == [(0, 0), (2, 2)]
    grown = replace(a, rule="grow-diag").links
    assert grown == [(0, 0), (0, 1), (1, 1), (2, 2), (2, 3)]
    assert set(replace(a, rule="argmax").links) <= set(grown)
    # a strongest link far from every mutual one is left out by grow-diag, kept by -final
    far = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    b = Alignment(["a", "b", "c"], ["w", "x", "y", "z"], far)
    assert (0, 3) not in replace(b, rule="grow-diag").links
    assert (0, 3) in replace(b, rule="grow-diag-final").links


def test_alignment_error_rate():
    sure, possible = parse_pharaoh("0-0 1-2 2?1")
    assert sure == {(0, 0), (1, 2)} and possible == {(2, 1)}
    assert alignment_error_rate([{(0, 0), (1, 2)}], [sure], [possible]) == 0.0
    # A = {0-0, 2-1}: |A∩S| = 1, |A∩P| = 2 (P includes S), |A| + |S| = 4 -> 1 - 3/4
    assert alignment_error_rate([{(0, 0), (2, 1)}], [sure], [possible]) == pytest.approx(0.25)
    assert alignment_error_rate([{(5, 5)}], [sure]) == 1.0


@pytest.mark.parametrize("run_fixture", ["toy_run", "toy_rnn_run"])
def test_trained_models_cross_black_cat(run_fixture, request):
    run_dir = request.getfixturevalue(run_fixture)
    assert evaluate_run(run_dir, device="cpu")["test"]["bleu"] > 90
    run = load_run(run_dir, device="cpu")
    translation, _, alignment = run.align(PROBE)
    assert translation == "Le chat noir a mangé la souris."
    links = dict((j, i) for i, j in alignment.hard())
    assert alignment.source[links[alignment.target.index("noir")]] == "black"
    assert alignment.source[links[alignment.target.index("chat")]] == "cat"
    # a given translation is force-aligned word for word
    forced, _, forced_alignment = run.align(PROBE, target="Le chat noir a mangé la souris.")
    assert forced_alignment.target == alignment.target
    torch.testing.assert_close(forced_alignment.weights, alignment.weights, atol=1e-4, rtol=0)


def test_probe_heatmaps_are_in_tensorboard(toy_run):
    events = EventAccumulator(str(toy_run / "tb"), size_guidance={"images": 0})
    events.Reload()
    images = events.Tags()["images"]
    assert "alignment/probe0_greedy" in images and "alignment/probe0_beam5" in images
    steps = [e.step for e in events.Images("alignment/probe0_greedy")]
    assert steps == [150, 300]  # one per validation: the slider shows the alignment forming
    assert events.Images("alignment/probe0_greedy")[-1].encoded_image_string.startswith(b"\x89PNG")


def test_align_command_png_and_terminal(toy_run, tmp_path):
    png = tmp_path / "heat.png"
    result = run_mt("align", "--run", str(toy_run), PROBE, "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 2000
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "Le chat noir a mangé la souris." and "2-1" in lines[-1] and "1-2" in lines[-1]
    )
    result = run_mt("align", "--run", str(toy_run), PROBE, "--layer", "0", "--head", "1")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[-8:-1]  # one row per target word, between header and links
    assert [row.split()[0] for row in rows] == ["Le", "chat", "noir", "a", "mangé", "la", "souris."]
    result = run_mt("align", "--run", str(toy_run), PROBE, "--layer", "7")
    assert result.returncode == 1 and "the decoder has 2 layers" in result.stderr

"""Alignments of a whole corpus against gold: reading the gold formats, AER/precision/recall,
symmetrization, the readings of attention (layers, heads, shift-att), and `mt align --src --tgt`."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mt import Translator
from mt.alignment import (
    Alignment,
    agreement,
    alignment_scores,
    diagonal_prior,
    parse_pharaoh,
    read_gold,
    read_sentences,
    shifted,
    symmetrize,
)
from mt.batching import collate
from mt.translator import TranslatorError
from tests.conftest import run_mt

# the toy pair with its true word alignments (adjectives follow their nouns in the target)
PAIRS = [
    ("The black cat ate the mouse.", "Le chat noir a mangé la souris.", "0-0 2-1 1-2 3-3 3-4 4-5 5-6"),
    ("A dog saw a cat.", "Un chien a vu un chat.", "0-0 1-1 2-2 2-3 3-4 4-5"),
    ("The white cow liked a red apple.", "La vache blanche a aimé une pomme rouge.",
     "0-0 2-1 1-2 3-3 3-4 4-5 6-6 5-7"),
]  # fmt: skip


def test_gold_formats(tmp_path):
    assert parse_pharaoh("0-1 2?2 3p4") == ({(0, 1)}, {(2, 2), (3, 4)})
    assert parse_pharaoh("1-2 3?3", one_based=True) == ({(0, 1)}, {(2, 2)})
    naacl = tmp_path / "gold.wa"
    naacl.write_text("0007 1 1 S\n0007 2 3 P\n0009 3 2\n0009 1 1 S 0.9\n")
    assert read_gold(naacl, 2) == ([{(0, 0)}, {(2, 1), (0, 0)}], [{(1, 2)}, set()])
    pharaoh = tmp_path / "gold.txt"
    pharaoh.write_text("0-0 1?2\n\n")
    assert read_gold(pharaoh, 2) == ([{(0, 0)}, set()], [{(1, 2)}, set()])
    with pytest.raises(ValueError, match="2 lines of links for 3 sentence pairs"):
        read_gold(pharaoh, 3)
    pharaoh.write_text("0-0\n1:2\n")
    with pytest.raises(ValueError, match=r"gold.txt, line 2: not Pharaoh links"):
        read_gold(pharaoh, 2)
    wrapped = tmp_path / "trial.e"
    wrapped.write_text("<s snum=0001> the cat </s>\nplain line\n")
    assert read_sentences(wrapped) == ["the cat", "plain line"]


def test_scores_by_hand():
    sure, possible = [{(0, 0), (1, 1)}], [{(2, 1)}]
    predicted = [{(0, 0), (2, 1), (2, 2)}]
    s = alignment_scores(predicted, sure, possible)
    # |A∩S| = 1, |A∩P| = 2 (P includes S), |A| = 3, |S| = 2
    assert s["aer"] == pytest.approx(1 - 3 / 5)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(1 / 2)


def test_symmetrization():
    forward = {(0, 0), (1, 1), (2, 1)}
    backward = {(0, 0), (1, 1), (3, 3), (1, 2)}
    assert symmetrize(forward, backward, "intersect") == {(0, 0), (1, 1)}
    assert symmetrize(forward, backward, "union") == forward | backward
    # grow: (2, 1) and (1, 2) neighbour (1, 1) and align words not yet aligned; final: (3, 3)
    assert symmetrize(forward, backward, "grow-diag-final") == {
        (0, 0), (1, 1), (2, 1), (1, 2), (3, 3),
    }  # fmt: skip
    # grow-diag stops before the final step: (3, 3) neighbours no link
    assert symmetrize(forward, backward, "grow-diag") == {(0, 0), (1, 1), (2, 1), (1, 2)}
    # a union link neither of whose words is unaligned is not added
    assert symmetrize({(0, 0), (1, 1), (0, 1)}, {(0, 0), (1, 1)}, "grow-diag-final") == {
        (0, 0), (1, 1),
    }  # fmt: skip


def test_agreement_of_both_directions():
    forward = Alignment(
        ["a", "b"], ["x", "y", "z"], torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    )
    # the reverse direction aligns x y z (its source) to a b: "a" looks at x, "b" at y
    backward = Alignment(
        ["x", "y", "z"], ["a", "b"], torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2]])
    )
    both = agreement(forward, backward)
    assert both.source == ["a", "b"] and both.target == ["x", "y", "z"]
    assert torch.allclose(both.weights[1], torch.tensor([(0.6 * 0.1) ** 0.5, (0.4 * 0.7) ** 0.5]))
    # y's forward argmax is "a", but "a" looks elsewhere: the agreement links y to "b"
    assert forward.links == [(0, 0), (0, 1), (1, 2)]
    assert both.links == [(0, 0), (1, 1), (1, 2)]
    assert replace(both, rule="mutual").links == [(0, 0), (1, 1)]
    with pytest.raises(ValueError, match="not the same sentence pair"):
        agreement(forward, forward)


def test_shift_reads_the_next_step():
    rows = torch.arange(12.0).view(4, 3)
    assert shifted(rows).tolist() == [
        rows[1].tolist(),
        rows[2].tolist(),
        rows[3].tolist(),
        rows[3].tolist(),
    ]


def test_words_stay_as_given(toy_run):
    t = Translator.load(toy_run, device="cpu")
    src = ["The", "black", "cat", "ate", "the", "mouse", ".", "☃"]  # split punctuation, an unknown
    tgt = ["Le", "chat", "noir", "a", "mangé", "la", "souris."]
    (a,) = t.align_words([src], [tgt])
    assert a.source == src and a.target == tgt and tuple(a.weights.shape) == (7, 8)
    # each source piece counted once: what the words got and the end-of-sentence mark sum to 1
    assert (a.weights.sum(1) <= 1 + 1e-5).all() and (a.weights.sum(1) > 0.5).all()
    # the pieces of the sentence, grouped as words, give what aligning the sentence gives
    sentence = t.align("The black cat ate the mouse.", "Le chat noir a mangé la souris.", beam=1)
    (same,) = t.align_words([sentence.source], [sentence.target])
    assert torch.allclose(same.weights, sentence.weights, atol=1e-5)
    assert same.score == pytest.approx(sentence.score, abs=1e-5)
    with pytest.raises(TranslatorError, match="1 source sentences but 2 targets"):
        t.align_words([src], [tgt, tgt])


def test_layers_are_averaged_and_shift_is_read(toy_run):
    t = Translator.load(toy_run, device="cpu")
    words = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    by_layer = [t.align_words(*words, layer=i)[0].weights for i in (0, 1)]
    both = t.align_words(*words, layer=[0, 1])[0].weights
    assert torch.allclose(both, (by_layer[0] + by_layer[1]) / 2, atol=1e-5)
    plain = t.align_words(*words, method="attention")[0]
    shift = t.align_words(*words, method="shift")[0]
    assert not torch.allclose(plain.weights, shift.weights)
    assert isinstance(shift, Alignment) and shift.target == plain.target


def test_align_corpus_command(toy_run, tmp_path):
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    (tmp_path / "gold").write_text("".join(p[2] + "\n" for p in PAIRS))
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    result = run_mt("align", "--run", str(toy_run), *files, "--gold", str(tmp_path / "gold"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and {"1-2", "2-1"} <= set(lines[0].split())  # the crossing
    predicted = [parse_pharaoh(line)[0] for line in lines]
    gold = [parse_pharaoh(p[2])[0] for p in PAIRS]
    s = alignment_scores(predicted, gold)
    assert f"AER {100 * s['aer']:.1f}  precision {100 * s['precision']:.1f}" in result.stderr
    # with -o the links go to the file and the scores to stdout
    out = tmp_path / "links.txt"
    result = run_mt("align", "--run", str(toy_run), *files, "--gold", str(tmp_path / "gold"),
                    "--method", "shift", "--layer", "0,1", "-o", str(out))  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("AER ")
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--src", "S"], "a corpus needs both --src and --tgt"),
        (["X", "--src", "S", "--tgt", "T"], "give a SENTENCE (and --target) or --src and --tgt"),
        ([], "give a SENTENCE to align"),
        (["X", "--gold", "G"], "--gold, --untokenize and --adapt work on a corpus"),
        (["X", "--adapt", "2"], "--gold, --untokenize and --adapt work on a corpus"),
    ],
)
def test_align_corpus_arguments(toy_run, args, message):
    result = run_mt("align", "--run", str(toy_run), *args)
    assert result.returncode == 1 and message in result.stderr


def test_adaptation_learns_the_pairs_it_will_align(toy_run):
    # a new "domain": the toy pair's words with the adjective before the noun in the target
    pairs = [
        ("The black cat ate the mouse.", "Le noir chat a mangé la souris."),
        ("A white dog saw a red apple.", "Un blanc chien a vu une rouge pomme."),
        ("The green bird liked the cow.", "Le vert oiseau a aimé la vache."),
    ]
    src, tgt = [p[0].split() for p in pairs], [p[1].split() for p in pairs]
    before = [a.score for a in Translator.load(toy_run, "last").align_words(src, tgt)]
    states = []
    for _ in range(2):
        translator = Translator.load(toy_run, "last")
        losses = translator.adapt(src, tgt, epochs=12, lr=1e-3)
        assert len(losses) == 12 and losses[-1] < 0.6 * losses[0]
        assert not translator.model.model.training  # left ready to decode
        states.append(translator.model.model.state_dict())
        # the forced decoding that reads the alignment now finds each pair far more likely
        after = [a.score for a in translator.align_words(src, tgt)]
        assert all(a > b + 1.0 for a, b in zip(after, before, strict=True)), (before, after)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # seeded: reproducible
    assert Translator.load(toy_run, "last").adapt(src, tgt, epochs=0) == []
    with pytest.raises(TranslatorError, match="adaptation: -1 passes at learning rate"):
        translator.adapt(src, tgt, epochs=-1)


def test_align_corpus_adapts_without_changing_the_run(toy_run, tmp_path):
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    (tmp_path / "gold").write_text("".join(p[2] + "\n" for p in PAIRS))
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    checkpoints = {p: p.read_bytes() for p in (toy_run / "checkpoints").iterdir()}
    result = run_mt("align", "--run", str(toy_run), *files, "--gold", str(tmp_path / "gold"),
                    "--adapt", "3", "--adapt-lr", "1e-4", "--reverse-run", str(toy_run))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("adapting: pass 3/3") == 2  # the run and the reverse run
    assert len(result.stdout.splitlines()) == 3 and "AER " in result.stderr
    assert {p: p.read_bytes() for p in (toy_run / "checkpoints").iterdir()} == checkpoints
    result = run_mt("align", "--run", str(toy_run), *files, "--adapt", "2", "--adapt-lr", "0")
    assert result.returncode == 1 and "adaptation: 2 passes at learning rate 0.0" in result.stderr


def test_align_corpus_checks_its_files(toy_run, tmp_path):
    (tmp_path / "src").write_text("a\nb\n")
    (tmp_path / "tgt").write_text("a\n")
    result = run_mt(
        "align",
        "--run",
        str(toy_run),
        "--src",
        str(tmp_path / "src"),
        "--tgt",
        str(tmp_path / "tgt"),
    )
    assert result.returncode == 1 and "has 2 lines but" in result.stderr


def test_diagonal_prior():
    weights = torch.tensor([[0.2, 0.2, 0.2, 0.2], [0.7, 0.1, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(diagonal_prior(weights, 0.0), weights)
    read = diagonal_prior(weights, 4.0)
    # each row keeps its mass; a flat row goes to the source word on the diagonal
    assert torch.allclose(read.sum(1), weights.sum(1))
    assert read[0].argmax() == 0 and read[1].argmax() == 0
    # strong enough, it overrules the attention: the middle target word links to the middle
    assert diagonal_prior(weights, 50.0)[1].argmax() == 1
    assert diagonal_prior(weights, 50.0)[2].sum() == 0  # a word without attention stays without


def test_diagonal_prior_is_read_everywhere(toy_run, tmp_path):
    t = Translator.load(toy_run, device="cpu")
    words = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    plain = t.align_words(*words)
    read = t.align_words(*words, prior=3.0)
    for a, b in zip(plain, read, strict=True):
        assert torch.allclose(b.weights, diagonal_prior(a.weights, 3.0))
    sentence = t.align(PAIRS[0][0], PAIRS[0][1], prior=3.0)
    assert torch.allclose(sentence.weights, diagonal_prior(t.align(*PAIRS[0][:2]).weights, 3.0))
    (translated,) = t.translate([PAIRS[0][0]], align=True, prior=3.0)
    (bare,) = t.translate([PAIRS[0][0]], align=True)
    assert torch.allclose(translated.alignment.weights, diagonal_prior(bare.alignment.weights, 3.0))
    with pytest.raises(TranslatorError, match="diagonal prior -1"):
        t.align_words(*words, prior=-1.0)
    # the CLI: so strong a prior that every link is the diagonal's
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    result = run_mt("align", "--run", str(toy_run), *files, "--diagonal", "500")
    assert result.returncode == 0, result.stderr
    for line, (src, tgt, _) in zip(result.stdout.splitlines(), PAIRS, strict=True):
        S, T = len(src.split()), len(tgt.split())
        links = parse_pharaoh(line)[0]
        assert sorted(j for _, j in links) == list(range(T))  # one link per target word
        for i, j in links:  # to a source word nearest the diagonal
            distance = [abs((k + 0.5) / S - (j + 0.5) / T) for k in range(S)]
            assert distance[i] == pytest.approx(min(distance))


def test_mutual_links_are_read_everywhere(toy_run, tmp_path):
    t = Translator.load(toy_run, device="cpu")
    words = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    argmax, mutual = t.align_words(*words), t.align_words(*words, links="mutual")
    for a, m in zip(argmax, mutual, strict=True):
        assert torch.equal(a.weights, m.weights)
        assert set(m.links) <= set(a.links)
        for i, j in m.links:  # the target word is also the source word's strongest
            assert m.weights[:, i].argmax() == j
    with pytest.raises(TranslatorError, match="link rule 'best'"):
        t.align_words(*words, links="best")
    with pytest.raises(TranslatorError, match="link threshold -0.1"):
        t.align_words(*words, threshold=-0.1)
    # the run's model.align_links is the default of the sentence and translation readings
    t.cfg.model.align_links = "mutual"
    sentence = t.align(PAIRS[0][0], PAIRS[0][1])
    assert sentence.links == mutual[0].links
    (translated,) = t.translate([PAIRS[0][0]], align=True)
    assert translated.alignment.rule == "mutual"
    # the CLI
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    result = run_mt("align", "--run", str(toy_run), *files, "--links", "mutual")
    assert result.returncode == 0, result.stderr
    for line, m in zip(result.stdout.splitlines(), mutual, strict=True):
        assert parse_pharaoh(line)[0] == set(m.links)


def test_reverse_run_is_combined(toy_run, tmp_path):
    # the toy run read backwards stands in for a run trained the other way: the command's links
    # are the forward and reverse readings combined as asked
    t = Translator.load(toy_run, device="cpu")
    src, tgt = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    forward, backward = t.align_words(src, tgt), t.align_words(tgt, src)
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    for how in ("intersect", "grow-diag-final", "soft"):
        result = run_mt("align", "--run", str(toy_run), *files, "--reverse-run", str(toy_run),
                        "--symmetrize", how)  # fmt: skip
        assert result.returncode == 0, result.stderr
        for line, f, b in zip(result.stdout.splitlines(), forward, backward, strict=True):
            expected = (
                set(agreement(f, b).links)
                if how == "soft"
                else symmetrize(set(f.links), {(i, j) for j, i in b.links}, how)
            )
            assert parse_pharaoh(line)[0] == expected, how
    # soft with a prior: the prior weighs the agreement (not each direction), then the rule reads it
    result = run_mt("align", "--run", str(toy_run), *files, "--reverse-run", str(toy_run),
                    "--symmetrize", "soft", "--diagonal", "4", "--links", "mutual")  # fmt: skip
    assert result.returncode == 0, result.stderr
    reading = t.read(prior=4.0, links="mutual")
    for line, f, b in zip(result.stdout.splitlines(), forward, backward, strict=True):
        assert parse_pharaoh(line)[0] == set(reading.words(agreement(f, b)).links)
    # and with a threshold: the agreement's pairs that weigh enough are linked too
    result = run_mt("align", "--run", str(toy_run), *files, "--reverse-run", str(toy_run),
                    "--symmetrize", "soft", "--links", "mutual", "--threshold", "0.05")  # fmt: skip
    assert result.returncode == 0, result.stderr
    reading, added = t.read(links="mutual", threshold=0.05), 0
    for line, f, b in zip(result.stdout.splitlines(), forward, backward, strict=True):
        both = reading.words(agreement(f, b))
        assert parse_pharaoh(line)[0] == set(both.links)
        added += len(both.links) - len(replace(both, threshold=0.0).links)
    assert added > 0  # the threshold took part
    # a hard symmetrization with a threshold: the intersection, plus the pairs whose agreement
    # weighs enough (each direction's own threshold links are not intersected)
    result = run_mt("align", "--run", str(toy_run), *files, "--reverse-run", str(toy_run),
                    "--symmetrize", "intersect", "--threshold", "0.05")  # fmt: skip
    assert result.returncode == 0, result.stderr
    added = 0
    for line, f, b in zip(result.stdout.splitlines(), forward, backward, strict=True):
        kept = symmetrize(set(f.links), {(i, j) for j, i in b.links}, "intersect")
        agreed = {(i, j) for j, i in (agreement(f, b).weights >= 0.05).nonzero().tolist()}
        assert parse_pharaoh(line)[0] == kept | agreed
        added += len(agreed - kept)
    assert added > 0
    # one sentence: the links of the same combination; soft draws the agreement it reads them from
    sentence, target = PAIRS[0][:2]
    for how in ("intersect", "soft"):
        png = tmp_path / f"{how}.png"
        result = run_mt("align", "--run", str(toy_run), sentence, "--target", target,
                        "--reverse-run", str(toy_run), "--symmetrize", how, "-o", str(png))  # fmt: skip
        assert result.returncode == 0, result.stderr
        f, b = forward[0], backward[0]
        expected = (
            set(agreement(f, b).links)
            if how == "soft"
            else symmetrize(set(f.links), {(i, j) for j, i in b.links}, how)
        )
        assert parse_pharaoh(result.stdout.splitlines()[-1])[0] == expected, how
        assert png.stat().st_size > 0


def test_align_readings_script_scores_as_mt_align_does(toy_run, tmp_path):
    """scripts/align_readings.py: its row for soft agreement read by a rule (and a diagonal prior)
    scores the links that `agreement` gives (what `mt align --symmetrize soft` writes) — also for
    a run whose config reads with a prior of its own, which the rows' labels must not hide; --only
    keeps the rows asked."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from omegaconf import OmegaConf

    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.model.align_prior, cfg.model.align_links = 100.0, "mutual"  # strong enough to move links
    OmegaConf.save(cfg, run / "config.yaml")
    for name, column in (("src", 0), ("tgt", 1), ("gold", 2)):
        (tmp_path / name).write_text("".join(p[column] + "\n" for p in PAIRS))
    script = Path(__file__).resolve().parent.parent / "scripts" / "align_readings.py"
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    command = [sys.executable, str(script), "--run", str(run), "--reverse-run", str(run),
               *files, "--gold", str(tmp_path / "gold"), "--rules", "mutual,grow-diag",
               "--diagonal", "2", "--thresholds", "0.05", "--only", "soft"]  # fmt: skip
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = {
        cells[1].strip(): float(cells[2])
        for line in result.stdout.splitlines()
        if line.startswith("| ") and (cells := line.split("|"))[2].strip()[:1].isdigit()
    }
    assert rows and all("soft" in name for name in rows)
    t = Translator.load(run, device="cpu")
    src, tgt = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    layers = list(range(t.cfg.model.decoder_layers))  # the row read: layers averaged
    raw = dict(layer=layers, prior=0.0)
    forward, backward = t.align_words(src, tgt, **raw), t.align_words(tgt, src, **raw)
    both = [agreement(f, b) for f, b in zip(forward, backward, strict=True)]
    gold = [parse_pharaoh(p[2])[0] for p in PAIRS]
    scores = set()
    for rule in ("mutual", "grow-diag"):
        for threshold in (0, 0.05):
            for strength in (0, 2):
                found = [
                    set(
                        replace(
                            a,
                            weights=diagonal_prior(a.weights, strength),
                            rule=rule,
                            threshold=threshold,
                        ).links
                    )
                    for a in both
                ]
                expected = 100 * alignment_scores(found, gold, gold)["aer"]
                name = f"both directions, attention, layers averaged, soft, {rule}"
                name += f", threshold {threshold}" if threshold else ""
                name += f", diagonal {strength}" if strength else ""
                assert rows[name] == pytest.approx(expected, abs=0.051), name
                scores.add(round(expected, 1))
    # the run's own prior (100) would have given the diagonal's links: another score
    diagonal = [
        set(replace(a, weights=diagonal_prior(a.weights, 100.0), rule="mutual").links) for a in both
    ]
    assert round(100 * alignment_scores(diagonal, gold, gold)["aer"], 1) not in scores


def test_joint_adaptation_reads_attention_as_alignments_are_read(toy_run):
    """What joint adaptation makes agree is the word alignment `align_words` reads."""
    translator = Translator.load(toy_run, "last")
    src, tgt = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    direction = translator.direction(src, tgt)
    batch = collate(direction.corpus, [0, 1, 2])
    with torch.no_grad():
        _, attention = direction.model(batch.src, batch.tgt_in, need_attn=True)
    ours = direction.word_alignments(attention, [0, 1, 2])
    read = translator.align_words(src, tgt, prior=0.0)
    for weights, alignment in zip(ours, read, strict=True):
        torch.testing.assert_close(weights, alignment.weights, atol=1e-5, rtol=0)


def test_joint_adaptation_makes_both_directions_agree(toy_run):
    src, tgt = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    apart = {}
    for weight in (0.0, 1.0):
        forward, reverse = Translator.load(toy_run, "last"), Translator.load(toy_run, "last")
        history = forward.adapt_jointly(reverse, src, tgt, agreement=weight, epochs=6,
                                        lr=1e-3)  # fmt: skip
        assert len(history) == 6 and not forward.model.model.training
        apart[weight] = history[-1][1]
    # the same passes and seed: only the agreement term differs
    assert apart[1.0] < 0.5 * apart[0.0], apart
    forward = Translator.load(toy_run, "last")
    assert forward.adapt_jointly(forward, src, tgt, agreement=1.0, epochs=0) == []
    with pytest.raises(TranslatorError, match="agreement weight -1.0: 0 or more"):
        forward.adapt_jointly(forward, src, tgt, agreement=-1.0, epochs=1)


def test_align_corpus_adapts_both_directions_together(toy_run, tmp_path):
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    result = run_mt("align", "--run", str(toy_run), *files, "--adapt", "2", "--reverse-run",
                    str(toy_run), "--adapt-agreement", "0.5", "--symmetrize", "soft")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("adapting both directions: pass 2/2") == 1
    assert len(result.stdout.splitlines()) == 3
    result = run_mt("align", "--run", str(toy_run), *files, "--adapt-agreement", "0.5")
    assert result.returncode == 1 and "--adapt-agreement adapts both directions" in result.stderr


def test_guided_adaptation_teaches_the_links_it_is_given(toy_run):
    """Adaptation guided by links that are not the pairs' true ones (each target word linked to
    the source word mirrored from its own position): the attention the model aligns with learns
    those links, which the translation loss alone never teaches."""
    src, tgt = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    guide = [
        {(len(s) - 1 - min(j * len(s) // len(t), len(s) - 1), j) for j in range(len(t))}
        for s, t in zip(src, tgt, strict=True)
    ]
    aer = {}
    for weight in (0.0, 1.0):
        translator = Translator.load(toy_run, "last")
        translator.adapt(src, tgt, epochs=30, lr=1e-3, guide=guide, guided_weight=weight)
        links = [set(a.links) for a in translator.align_words(src, tgt, prior=0.0)]
        aer[weight] = alignment_scores(links, guide, guide)["aer"]
    assert aer[0.0] > 0.6 and aer[1.0] < 0.25, aer
    # both directions together learn them too, the reverse one transposed
    forward, reverse = Translator.load(toy_run, "last"), Translator.load(toy_run, "last")
    forward.adapt_jointly(reverse, src, tgt, agreement=0.1, epochs=30, lr=1e-3, guide=guide,
                          guided_weight=1.0)  # fmt: skip
    links = [set(a.links) for a in forward.align_words(src, tgt, prior=0.0)]
    back = [{(i, j) for j, i in a.links} for a in reverse.align_words(tgt, src, prior=0.0)]
    assert alignment_scores(links, guide, guide)["aer"] < 0.25
    assert alignment_scores(back, guide, guide)["aer"] < 0.35
    with pytest.raises(TranslatorError, match="links of 2 pairs for 3 pairs"):
        translator.adapt(src, tgt, epochs=1, guide=guide[:2], guided_weight=1.0)
    with pytest.raises(TranslatorError, match="guided weight -1.0: 0 or more"):
        translator.adapt(src, tgt, epochs=1, guide=guide, guided_weight=-1.0)


def test_align_corpus_guided_by_eflomal_links(toy_run, tmp_path):
    """`mt align --adapt-guided`: eflomal learns the pairs with the run's training split, and its
    links guide the adaptation; the true alignment of the toy pairs is found."""
    (tmp_path / "src").write_text("".join(p[0] + "\n" for p in PAIRS))
    (tmp_path / "tgt").write_text("".join(p[1] + "\n" for p in PAIRS))
    (tmp_path / "gold").write_text("".join(p[2] + "\n" for p in PAIRS))
    translator = Translator.load(toy_run, "last")
    src, tgt = [p[0].split() for p in PAIRS], [p[1].split() for p in PAIRS]
    guide = translator.guide_links(src, tgt)
    gold = [parse_pharaoh(p[2])[0] for p in PAIRS]
    assert all(
        g and {i for i, _ in g} <= set(range(len(s))) and {j for _, j in g} <= set(range(len(t)))
        for g, s, t in zip(guide, src, tgt, strict=True)
    )  # links of these pairs' words, not of the corpus pairs beside them
    assert alignment_scores(guide, gold, gold)["aer"] < 0.35  # eflomal samples: not exact
    files = ["--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt")]
    result = run_mt("align", "--run", str(toy_run), *files, "--gold", str(tmp_path / "gold"),
                    "--adapt", "3", "--adapt-guided", "1", "--reverse-run", str(toy_run))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("alignment loss") == 6  # 3 passes, both directions
    assert len(result.stdout.splitlines()) == 3 and "AER " in result.stderr
    assert "the guide of the adaptation: AER " in result.stderr  # the teacher, scored beside
    result = run_mt("align", "--run", str(toy_run), *files, "--adapt", "1", "--adapt-guided", "-1")
    assert result.returncode == 1 and "--adapt-guided -1.0: a weight of 0 or more" in result.stderr

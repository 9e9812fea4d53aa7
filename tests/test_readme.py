"""Every `mt train` / `make train` / `make bench` override the README documents composes with the
configs in conf/, so the README cannot drift from them."""

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from mt.config import CONF_DIR

README = Path(__file__).resolve().parent.parent / "README.md"


def load_results_script():
    spec = importlib.util.spec_from_file_location(
        "results", README.parent / "scripts" / "results.py"
    )
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    return results


OVERRIDE = re.compile(r"^[+~]?[A-Za-z_][\w.]*=")


def documented_overrides() -> list[list[str]]:
    """The Hydra overrides of each documented training command, one list per choice of a sweep."""
    text = README.read_text().replace("\\\n", " ")
    commands = re.findall(r"mt train [^`\n]*", text)
    commands += re.findall(r'make (?:train|bench)[^`\n]*ARGS="([^"]*)"', text)
    found = []
    for command in commands:
        words = [w for w in shlex.split(command.replace("…", "")) if OVERRIDE.match(w)]
        if any("${" in w or "..." in w for w in words):
            continue
        # a sweep (-m key=a,b,c) is composed once per choice
        sweeps = [w for w in words if "," in w.split("=", 1)[1] and "{" not in w]
        fixed = [w for w in words if w not in sweeps]
        if not sweeps:
            found.append(fixed)
        for word in sweeps:
            key, values = word.split("=", 1)
            found.extend([*fixed, f"{key}={value}"] for value in values.split(","))
    return found


OVERRIDES = documented_overrides()


def test_the_readme_documents_training_commands():
    assert len(OVERRIDES) >= 8
    assert [
        "data=hub",
        "data.hub=wmt14",
        "data.hub_config=de-en",
        "data.src_lang=de",
        "data.tgt_lang=en",
    ] in OVERRIDES


@pytest.mark.parametrize("overrides", OVERRIDES, ids=[" ".join(o) for o in OVERRIDES])
def test_a_documented_override_composes(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    assert cfg.name and cfg.model.arch in ("transformer", "rnn")


def test_results_tables_are_made_from_results_csv():
    """The results tables of the README and docs/RESULTS.md are those that scripts/results.py
    renders from docs/results.csv, and every row names its command."""
    results = load_results_script()
    rows = results.read_rows()
    assert rows, "docs/results.csv has no rows"
    for path in results.DOCUMENTS:
        blocks = results.BLOCK.findall(path.read_text())
        assert blocks, f"{path.name} has no results table"
        for _, name, body, _ in blocks:
            assert body == results.table(results.chosen(rows, name)), (
                f"{path.name}: run scripts/results.py render"
            )
    for row in rows:
        assert set(row) == set(results.FIELDS) and all(row[k] for k in ("command", "bleu"))
        assert row["ended"] in {*results.ENDINGS.values(), "stopped"}
    assert results.chosen(rows, "headline"), "no row is marked for the README (--headline)"


def test_results_rows_say_how_training_ended(tmp_path):
    results = load_results_script()
    log = tmp_path / "train.log"
    assert results.how_it_ended(tmp_path) == "stopped"  # no log at all
    for reason, ended in (
        ("no better dev bleu in 6 validations (train.patience)", "converged"),
        ("reached train.max_minutes=120", "budget"),
        ("reached train.max_steps=4000", "update limit"),
        ("stopped by SIGTERM", "stopped"),
    ):
        log.write_text(
            "2026-12-06 06:27:41 INFO mt.train: training ended at step 250: reached "
            "train.max_steps=250; best dev bleu 1.00 at step 250\n"  # an earlier end, resumed
            f"2026-12-06 08:27:41 INFO mt.train: training ended at step 4000: {reason}; best dev "
            "bleu 40.00 at step 3400\n"
        )
        assert results.how_it_ended(tmp_path) == ended


def test_a_run_reported_again_replaces_its_earlier_rows():
    """`results.py add --replace`: the new row of a resumed run takes the place of its old ones,
    and rows of other runs stay where they are."""
    results = load_results_script()

    def row(command: str, bleu: str, updates: int) -> dict:
        same = dict.fromkeys(results.SAME_RUN, "x")
        return same | {"command": command, "bleu": bleu, "updates": updates}

    rows = [row("a", "50.0", 100), row("b", "40.0", 100), row("a", "51.0", 200)]
    new = row("a", "52.0", 300)
    out, replaced = results.replace_rows(rows, new)
    assert [r["bleu"] for r in out] == ["52.0", "40.0"]
    assert [r["bleu"] for r in replaced] == ["50.0", "51.0"]
    out, replaced = results.replace_rows(rows, row("c", "30.0", 300))
    assert [r["bleu"] for r in out] == ["50.0", "40.0", "51.0", "30.0"] and replaced == []


def test_a_budget_checkpoints_row_is_the_run_at_its_mark(toy_run, tmp_path):
    """A row scored with best-<M>min.pt (train.budget_checkpoints) counts the minutes and updates
    up to M and ended by that budget, whatever ended the run itself later."""
    results = load_results_script()
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    split = yaml.safe_load((run / "config.yaml").read_text())["data"]["test_splits"][0]
    (run / "eval").mkdir(exist_ok=True)
    scores = {"bleu": 40.0, "chrf": 60.0, "bleu_tok_lc": 41.0, "beam_size": 5}
    scores["checkpoint"] = "best-60min.pt"
    (run / "eval" / f"{split}.scores.json").write_text(json.dumps(scores))
    history = [(500, 30.5, 20.0), (1000, 61.2, 25.0), (1500, 90.0, 30.0)]
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "minutes": m, "dev_bleu": b}) + "\n" for s, m, b in history)
    )
    (run / "train.log").write_text(
        "2026-12-06 19:04:04 INFO mt.train: training ended at step 1600: stopped by SIGTERM; best "
        "dev bleu 30.00 at step 1500\n"
    )
    row = results.run_row(run, None, "make train", "", False)
    assert (row["ended"], row["updates"], row["train_minutes"], row["best_step"]) == (
        "budget", 1000, "61.2", 1000
    )  # fmt: skip
    assert results.how_it_ended(run) == "stopped"  # the run itself


def test_results_machine_names_the_vector_extension(tmp_path):
    """Two hosts both called "AMD EPYC" trained 2.6x apart in speed (AVX-512 against AVX2), so a
    result's machine column names the widest vector extension the CPU has."""
    results = load_results_script()
    cpuinfo = tmp_path / "cpuinfo"
    flags = {
        "fpu sse2 avx avx2 fma": "AVX2",
        "fpu avx2 avx512f avx512bw": "AVX-512",
        "fpu avx2 avx512f avx512_bf16": "AVX-512-BF16",
    }
    for flag_line, isa in flags.items():
        cpuinfo.write_text(
            f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flag_line}\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n"
        )
        assert results.machine(cpuinfo).endswith("-core AMD EPYC, " + isa)
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2\n")
    assert results.machine(cpuinfo).endswith("-core Some CPU")


def test_a_row_names_the_recipe_its_command_names():
    results = load_results_script()
    named = 'make train ARGS="experiment=multi30k_tiny model.norm=post train.max_minutes=null"'
    assert results.experiment(named, "multi30k_en_de-tiny") == "multi30k_tiny"
    assert results.experiment("mt train +experiment=tatoeba_guided", "x") == "tatoeba_guided"
    default = "make train ARGS=\"train.max_minutes=null 'train.budget_checkpoints=[60,120]'\""
    assert results.experiment(default, "tatoeba_en_fr-transformer") == "tatoeba_en_fr-transformer"
    assert results.experiment("mt train train.experiment=x", "run") == "run"

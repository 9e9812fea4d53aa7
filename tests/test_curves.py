"""scripts/plot_curves.py: the curves PNG and the minutes each run took to reach dev scores."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location(
        "plot_curves", ROOT / "scripts" / "plot_curves.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(folder: Path, bleus: list[float]) -> Path:
    folder.mkdir()
    lines = [
        {"step": 250 * (i + 1), "minutes": 3.0 * (i + 1), "minutes_with_validation": 3.2 * (i + 1)}
        | {"dev_bleu": b}
        for i, b in enumerate(bleus)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def test_time_to_marks_takes_the_first_validation_that_reached_each_mark(tmp_path):
    curves = load_script()
    a = fake_run(tmp_path / "a", [10.0, 25.0, 24.0, 31.5])
    b = fake_run(tmp_path / "b", [12.0, 20.0])
    table = curves.time_to_marks([a, b], "bleu", [20, 30], ["fast"])
    assert table.splitlines()[2:] == [
        "| fast | 6.0 / 6.4 min (update 500) | 12.0 / 12.8 min (update 1,000) |",
        "| b | 6.0 / 6.4 min (update 500) | — |",
    ]


def test_a_copied_metrics_file_stands_for_its_run(tmp_path):
    curves = load_script()
    run = fake_run(tmp_path / "a", [10.0, 25.0])
    copy = tmp_path / "m30k-linear.jsonl"
    copy.write_text((run / "metrics.jsonl").read_text())
    assert curves.read_history(copy) == curves.read_history(run)
    table = curves.time_to_marks([copy], "bleu", [20], [])
    assert table.splitlines()[2] == "| m30k-linear | 6.0 / 6.4 min (update 500) |"


def test_a_curve_can_be_drawn_against_updates_or_tokens_and_says_when_a_run_lacks_them(tmp_path):
    curves = load_script()
    run = fake_run(tmp_path / "a", [10.0, 25.0])
    assert curves.curve(run, "bleu", "step") == ([250, 500], [10.0, 25.0])
    with pytest.raises(
        SystemExit, match=r"a/metrics.jsonl.*update 250 records no 'tokens'"
    ) as error:
        curves.curve(run / "metrics.jsonl", "bleu", "tokens")
    assert "--x updates" in str(error.value)

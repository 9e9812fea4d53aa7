"""`mt translate` on a tiny trained run, as a user calls it."""

import subprocess
import sys


def mt(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "mt", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_translate_arguments(toy_run):
    result = mt(
        "translate",
        "--run",
        str(toy_run),
        "The black cat ate the mouse.",
        "A dog saw a white horse.",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Le chat noir a mangé la souris.",
        "Un chien a vu un cheval blanc.",
    ]


def test_translate_stdin_keeps_one_line_per_input_line(toy_run):
    lines = "The black cat ate the mouse.\n\nThe girl liked the red apple.\n"
    result = mt("translate", "--run", str(toy_run), "--beam", "1", "--batch-size", "2", stdin=lines)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 3 and out[0] == "Le chat noir a mangé la souris." and out[1] == ""
    assert out[2] == "La fille a aimé la pomme rouge."


def test_translate_nbest(toy_run):
    result = mt(
        "translate",
        "--run",
        str(toy_run),
        "--beam",
        "4",
        "--nbest",
        "3",
        "The black cat ate the mouse.",
    )
    rows = [line.split(" ||| ") for line in result.stdout.splitlines()]
    assert len(rows) == 3 and all(r[0] == "0" for r in rows)
    assert rows[0][1] == "Le chat noir a mangé la souris."
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_missing_run_directory_is_one_line(tmp_path):
    result = mt("translate", "--run", str(tmp_path / "nope"), "hello")
    assert result.returncode == 1
    assert result.stderr.strip() == f"mt: error: run directory not found: {tmp_path / 'nope'}"

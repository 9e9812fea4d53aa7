"""`mt translate` and `mt align` on a tiny trained run, as a user calls them: arguments, stdin, a
terminal, and hostile input."""

import os
import pty
import random
import select
import subprocess
import sys

import pytest

from mt import cli
from tests.conftest import run_mt, start_mt

PROBE = "The black cat ate the mouse."


def test_translate_arguments(toy_run):
    result = run_mt("translate", "--run", str(toy_run), PROBE, "A dog saw a white horse.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Le chat noir a mangé la souris.",
        "Un chien a vu un cheval blanc.",
    ]


def test_translate_stdin_keeps_one_line_per_input_line(toy_run):
    lines = f"{PROBE}\n\nThe girl liked the red apple.\n"
    result = run_mt(
        "translate", "--run", str(toy_run), "--beam", "1", "--batch-size", "2", stdin=lines
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 3 and out[0] == "Le chat noir a mangé la souris." and out[1] == ""
    assert out[2] == "La fille a aimé la pomme rouge."


def test_translate_nbest(toy_run):
    result = run_mt("translate", "--run", str(toy_run), "--beam", "4", "--nbest", "3", PROBE)
    rows = [line.split(" ||| ") for line in result.stdout.splitlines()]
    assert len(rows) == 3 and all(r[0] == "0" for r in rows)
    assert rows[0][1] == "Le chat noir a mangé la souris."
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_missing_run_directory_is_one_line(tmp_path):
    result = run_mt("translate", "--run", str(tmp_path / "nope"), "hello")
    assert result.returncode == 1
    assert result.stderr.strip() == f"mt: error: run directory not found: {tmp_path / 'nope'}"


def read_line(stream, timeout: float = 120) -> str:
    """The next line of a pipe, failing (instead of hanging) if none comes in `timeout` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no answer"
    return stream.readline()


def test_each_line_is_answered_while_the_pipe_stays_open(toy_run):
    proc = start_mt("translate", "--run", str(toy_run), stdin=subprocess.PIPE)
    proc.stdin.write(PROBE + "\n")
    proc.stdin.flush()
    assert read_line(proc.stdout) == "Le chat noir a mangé la souris.\n"
    proc.stdin.write("A dog saw a white horse.\n")
    proc.stdin.flush()
    assert read_line(proc.stdout) == "Un chien a vu un cheval blanc.\n"
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_a_terminal_gets_each_answer_at_once(toy_run):
    controller, terminal = pty.openpty()
    proc = start_mt("translate", "--run", str(toy_run), stdin=terminal)
    os.close(terminal)
    os.write(controller, (PROBE + "\n").encode())
    answer = read_line(proc.stdout)
    assert answer == "Le chat noir a mangé la souris.\n", proc.stderr.read() if not answer else ""
    os.write(controller, b"\x04")  # Ctrl-D at the start of a line: end of input
    _, stderr = proc.communicate(timeout=60)
    os.close(controller)
    assert proc.returncode == 0 and "type a sentence and Enter" in stderr


def test_a_bad_byte_loses_no_line(toy_run):
    result = run_mt(
        "translate",
        "--run",
        str(toy_run),
        stdin=b"Hello \xff\xfe world\nA dog saw a white horse.\n",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode().split("\n")
    assert len(out) == 3 and out[1] == "Un chien a vu un cheval blanc." and out[2] == ""
    assert "mt: warning: input 1: invalid UTF-8 (byte 6: b'\\xff\\xfe w')" in result.stderr.decode()


def hostile_lines(rng: random.Random) -> list[bytes]:
    """Lines of every kind a pipe may bring, without their line breaks."""
    words = [
        "the",
        "black",
        "cat",
        "ate",
        "mouse",
        "dog",
        "saw",
        "a",
        "white",
        "horse",
        "girl",
        "red",
        "apple",
    ]
    kinds = [
        lambda: " ".join(rng.choices(words, k=rng.randint(1, 12))).encode(),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))).replace(b"\n", b""),
        lambda: b"a\x00b \x01\x07\x1b[31m c\x7f " + "é猫\u2028\u0085".encode(),
        lambda: (" ".join(rng.choices(words, k=400))).encode(),  # longer than the model's positions
        lambda: rng.choice([b"", b"   ", b"\t \t", b"\r", b"\x0b\x0c"]),
        lambda: b"half\rway " + "ﬁ \ufeff\u200b".encode(),
    ]
    return [rng.choice(kinds)() for _ in range(300)]


@pytest.mark.parametrize("seed", [1, 2])
def test_hostile_input_gives_one_line_per_line_and_no_traceback(toy_run, seed):
    rng = random.Random(seed)
    lines = hostile_lines(rng)
    endings = [rng.choice([b"\n", b"\r\n"]) for _ in lines]
    stdin = b"".join(line + end for line, end in zip(lines, endings, strict=True))
    if seed == 2:
        stdin = stdin.removesuffix(endings[-1])  # a last line without a line break
    result = run_mt("translate", "--run", str(toy_run), "--beam", "2", stdin=stdin)
    stderr = result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    out = result.stdout.split(b"\n")
    assert out[-1] == b"" and len(out) - 1 == len(lines)
    for line, translation in zip(lines, out, strict=False):
        if not line.strip():
            assert translation == b""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beam", "0"], "argument --beam: must be a positive integer, not 0"),
        (["--beam", "-3"], "argument --beam: must be a positive integer, not -3"),
        (["--nbest", "0"], "argument --nbest: must be a positive integer, not 0"),
        (["--batch-size", "x"], "argument --batch-size: must be a positive integer, not 'x'"),
    ],
)
def test_translate_arguments_are_checked(toy_run, args, message):
    result = run_mt("translate", "--run", str(toy_run), *args, PROBE)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_align_checks_its_arguments(toy_run, toy_rnn_run):
    result = run_mt("align", "--run", str(toy_run), PROBE, "--target", " ")
    assert result.returncode == 1
    assert result.stderr == "mt: error: an empty target was given: give the translation to align\n"
    result = run_mt("align", "--run", str(toy_run), PROBE, "--beam", "0")
    assert result.returncode == 2 and "must be a positive integer, not 0" in result.stderr
    result = run_mt("align", "--run", str(toy_run), PROBE, "--layer", "7")
    assert (
        result.returncode == 1 and "layer/head: layer 7: the decoder has 2 layers" in result.stderr
    )
    result = run_mt("align", "--run", str(toy_rnn_run), PROBE, "--head", "0")
    assert result.returncode == 1 and "this model has a single attention" in result.stderr
    result = run_mt("align", "--run", str(toy_run), PROBE, "--threshold", "2")
    assert result.returncode == 1
    assert result.stderr == "mt: error: link threshold 2.0: a weight from 0 (none) to 1\n"


def test_the_run_decode_batch_size_reaches_translate(toy_run, monkeypatch, capsys):
    import mt.run

    seen = []
    real = mt.run.translate_ids

    def spy(model, sources, device, options, *args, **kwargs):
        seen.append(options.batch_size)
        return real(model, sources, device, options, *args, **kwargs)

    monkeypatch.setattr(mt.run, "translate_ids", spy)
    cli.main(["translate", "--run", str(toy_run), PROBE])
    from omegaconf import OmegaConf

    assert seen == [OmegaConf.load(toy_run / "config.yaml").decode.batch_size]
    cli.main(["translate", "--run", str(toy_run), "--batch-size", "3", PROBE])
    assert seen[-1] == 3
    assert capsys.readouterr().out.splitlines() == ["Le chat noir a mangé la souris."] * 2


def test_translate_help_runs_without_a_model():
    result = subprocess.run(
        [sys.executable, "-m", "mt", "translate", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "answered as soon as it arrives" in result.stdout


def test_translate_samples_on_request(toy_run):
    result = run_mt(
        "translate",
        "--run",
        str(toy_run),
        "--strategy",
        "sample",
        "--top-k",
        "1",
        "--nbest",
        "2",
        PROBE,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split(" ||| ") for line in result.stdout.splitlines()]
    assert [r[1] for r in rows] == ["Le chat noir a mangé la souris."] * 2  # top-1 draws are greedy
    result = run_mt(
        "translate", "--run", str(toy_run), "--strategy", "greedy", "--nbest", "2", PROBE
    )
    assert result.returncode == 1 and "nbest > 1 needs strategy beam or sample" in result.stderr


def test_translate_imports_no_training(toy_run):
    """Running a model needs neither the trainer, TensorBoard, DDP set-up nor `datasets`."""
    program = (
        "import sys; from mt import cli; "
        f"cli.main(['translate', '--run', {str(toy_run)!r}, {PROBE!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorboard', 'datasets') or m in ('mt.train', 'mt.distributed', 'mt.pipeline', "
        "'torch.utils.tensorboard', 'hydra')))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Le chat noir a mangé la souris.", "[]"]

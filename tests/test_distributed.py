"""Data-parallel training on CPU (gloo, 2 processes, started by `mt train` itself under torchrun):
the same update as one process accumulating the same batches, one set of files, and resumable with
another number of processes."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from mt import checkpoint, distributed
from mt.errors import MTError
from tests.conftest import TOY, start_mt, wait_until


def train(tmp_path, run, *extra):
    args = [
        *TOY,
        f"cache_dir={tmp_path / 'cache'}",
        "data_dir=null",
        f"run_dir={tmp_path / run}",
        *extra,
    ]
    result = subprocess.run(
        [sys.executable, "-m", "mt", "train", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# two processes share train.batch_tokens: each takes batches of half of it
TWO = ["train.batch_tokens=2400", "train.processes=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    limits = ["train.max_steps=2", "train.validate_every=2"]
    train(tmp, "one", *limits, "train.batch_tokens=1200", "train.accumulate=2")
    two = train(tmp, "two", *limits, *TWO)  # `mt train` starts the two processes itself
    return tmp, two


def test_two_processes_take_the_update_of_one_accumulating_both_batches(runs):
    tmp, _ = runs
    one = checkpoint.load(tmp / "one" / "checkpoints" / "last.pt")
    two = checkpoint.load(tmp / "two" / "checkpoints" / "last.pt")
    assert one["progress"]["train_tokens"] == two["progress"]["train_tokens"]
    for name, weights in one["model"].items():
        torch.testing.assert_close(two["model"][name], weights, atol=1e-6, rtol=0)


def test_one_set_of_checkpoints_and_logs(runs):
    tmp, result = runs
    run = tmp / "two"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
        "step-2.pt",
    ]
    assert len(list((run / "tb").iterdir())) == 1
    log = (run / "train.log").read_text()
    assert log.count("training ended at step 2") == 1 and "x 2 processes" in log
    assert result.stderr.count("training ended at step 2") == 1  # rank 1 logs warnings only


def test_two_processes_take_the_plateau_decreases_of_rank_0(tmp_path):
    # rank 0 alone validates; had rank 1 kept its rate after a decrease, its weights would part
    # from rank 0's, and so would the gradients both average: the runs below would differ
    plateau = [
        "train.max_steps=4",
        "train.validate_every=1",
        "train.schedule=plateau",
        "train.plateau_patience=1",
        "train.warmup=1",
        "train.patience=100",
    ]
    train(tmp_path, "one", *plateau, "train.batch_tokens=1200", "train.accumulate=2")
    train(tmp_path, "two", *plateau, *TWO)
    one = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")
    two = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")
    assert one["progress"]["lr_scale"] < 1  # the rate was decreased
    assert two["progress"]["lr_scale"] == one["progress"]["lr_scale"]
    for name, weights in one["model"].items():
        torch.testing.assert_close(two["model"][name], weights, atol=1e-6, rtol=0)


def test_resume_with_one_process_from_a_two_process_checkpoint(runs):
    tmp, _ = runs
    limits = ["train.max_steps=4", "train.validate_every=2"]
    result = train(tmp, "two", *limits, "train.batch_tokens=2400", "train.processes=1")
    assert f"resumed from {tmp / 'two' / 'checkpoints' / 'last.pt'} at step 2" in result.stderr
    # one process takes batches twice the size: the epoch goes on from the same fraction of it
    assert "resuming with 1 process(es) and batches of another size" in result.stderr
    state = checkpoint.load(tmp / "two" / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 4


def test_processes_auto_is_two_on_a_cpu_with_two_cores_one_on_a_gpu_or_under_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for cores, expected in ((1, 1), (2, 2), (16, 2)):
        monkeypatch.setattr(distributed.os, "cpu_count", lambda cores=cores: cores)
        assert distributed.processes_to_start("auto", cpu) == expected
    assert distributed.processes_to_start("auto", gpu) == 1
    assert distributed.processes_to_start(3, cpu) == 3
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.processes_to_start(3, cpu) == 1  # torchrun started them already
    monkeypatch.delenv("WORLD_SIZE")
    for bad in (0, "two", True):
        with pytest.raises(MTError, match="train.processes: .* neither auto nor a number"):
            distributed.processes_to_start(bad, cpu)


def test_a_setup_error_of_rank_0_is_one_message_not_one_per_process(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mt",
            "train",
            "data=multi30k_en_de",
            "model=transformer_toy",
            "train.threads=1",
            "train.processes=2",
            f"data_dir={tmp_path / 'nowhere'}",
            f"cache_dir={tmp_path / 'cache'}",
            f"run_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.count("mt: error: data.local:") == 1, result.stderr
    assert "Traceback" not in result.stderr and "Connection closed" not in result.stderr


def test_a_sweep_asked_for_several_processes_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mt", "train", "-m", *TOY, "train.processes=2"]
        + [f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "train.processes=2 with -m: a sweep trains its runs one process each" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm", "ctrl_c"])
def test_a_signal_stops_both_processes_with_one_message_and_saves_last_pt(tmp_path, ctrl_c):
    # SIGTERM reaches the launcher alone and it passes it on; a Ctrl-C at a terminal reaches the
    # launcher and both processes at once
    run = tmp_path / "run"
    args = [*TOY, f"cache_dir={tmp_path / 'cache'}", "data_dir=null", f"run_dir={run}"]
    args += ["train.validate_every=20", "train.max_steps=100000", *TWO]
    proc = start_mt("train", *args, start_new_session=True)
    wait_until((run / "checkpoints" / "step-20.pt").exists, proc)
    sig = signal.SIGINT if ctrl_c else signal.SIGTERM
    if ctrl_c:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    assert "Traceback" not in stderr and "death signal" not in stderr, stderr[-3000:]
    step = checkpoint.load(run / "checkpoints" / "last.pt")["progress"]["step"]
    assert stderr.count(f"mt: training stopped by {sig.name} at step {step};") == 1, stderr[-3000:]
    wait_until(lambda: not group_alive(proc.pid), timeout=60)  # no process left behind


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


NICENESS = "from mt import distributed; changed = distributed.keep_niceness(); " + (
    "print(changed, distributed.group_niceness(open('/proc/self/autogroup').read()))"
)


def test_the_nice_value_of_a_group_is_read_and_no_group_is_none():
    assert distributed.group_niceness("/autogroup-221 nice 0\n") == 0
    assert distributed.group_niceness("/autogroup-7 nice -3\n") == -3
    # a process in no autogroup of its own reads an empty file (as /proc/1/autogroup here)
    assert distributed.group_niceness("") is None
    assert distributed.group_niceness("garbage\n") is None


@pytest.mark.skipif(
    not os.path.exists("/proc/self/autogroup"), reason="the kernel has no autogroup scheduling"
)
def test_a_niced_process_leading_its_session_gives_its_group_its_niceness():
    # what torchrun's processes are: each leads a session of its own
    own = subprocess.run(
        [sys.executable, "-c", NICENESS],
        start_new_session=True,
        preexec_fn=lambda: os.nice(7),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert own.returncode == 0, own.stderr[-2000:]
    changed, value = own.stdout.split()
    # a new session gets an autogroup of its own, unless the kernel gives it none (the file reads
    # empty): then there is nothing to change
    assert (changed, value) == (("False", "None") if value == "None" else ("True", "7"))
    # a process that shares its session (with this test) leaves the group alone
    with open("/proc/self/autogroup") as f:
        before = f.read()
    shared = subprocess.run(
        [sys.executable, "-c", NICENESS],
        preexec_fn=lambda: os.nice(7),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shared.returncode == 0, shared.stderr[-2000:]
    assert shared.stdout.split()[0] == "False"
    with open("/proc/self/autogroup") as f:
        assert f.read() == before

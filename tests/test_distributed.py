"""Data-parallel training with torchrun on CPU (gloo, 2 processes): the same update as one process
accumulating the same batches, one set of files, and resumable with another number of processes."""

import subprocess
import sys

import pytest
import torch

from mt import checkpoint
from tests.conftest import TOY


def train(tmp_path, run, *extra, nproc=1):
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "mt"]
        if nproc > 1
        else ["-m", "mt"]
    )
    args = [
        *TOY,
        f"cache_dir={tmp_path / 'cache'}",
        "data_dir=null",
        f"run_dir={tmp_path / run}",
        *extra,
    ]
    result = subprocess.run(
        [sys.executable, *launcher, "train", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    limits = ["train.max_steps=2", "train.validate_every=2"]
    train(tmp, "one", *limits, "train.accumulate=2")
    two = train(tmp, "two", *limits, nproc=2)
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


def test_resume_with_one_process_from_a_two_process_checkpoint(runs):
    tmp, _ = runs
    result = train(tmp, "two", "train.max_steps=4", "train.validate_every=2")
    assert f"resumed from {tmp / 'two' / 'checkpoints' / 'last.pt'} at step 2" in result.stderr
    state = checkpoint.load(tmp / "two" / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 4

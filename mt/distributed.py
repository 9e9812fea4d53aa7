"""Data-parallel training under `torchrun`: how many processes `mt train` starts itself
(`train.processes`), process group set-up, who does what, and how the ranks agree to stop (limits,
signals).

Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op for a single process.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import time
import uuid
from typing import NoReturn

import torch
import torch.distributed as dist

from mt.errors import MTError


def processes_to_start(setting, device: torch.device) -> int:
    """How many processes `mt train` runs as (`train.processes`): `auto` is 2 on a CPU with 2 or
    more cores (two single-threaded processes outrun one two-threaded: small matrices parallelise
    poorly across threads; docs/BENCHMARKS.md), 1 on a GPU; under torchrun, 1: it started them."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ:
        return 1
    if setting == "auto":
        return 2 if device.type == "cpu" and (os.cpu_count() or 1) >= 2 else 1
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    raise MTError(
        f"train.processes: {setting!r} is neither auto nor a number of processes (1, 2, ...)"
    )


def launch(processes: int, argv: list[str]) -> NoReturn:
    """Run `mt train argv` as `processes` data-parallel processes on this machine (what
    `torchrun --standalone` does), then exit as they did."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the processes report their own errors and signals; torch sets each of its elastic module
    # loggers' level itself (LOGLEVEL, else WARNING), so the namespace's level alone would not do
    for name in [*logging.root.manager.loggerDict, "torch.distributed.elastic"]:
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "mt", "train", *argv)
    except SignalException as e:  # passed on to the processes, which saved and stopped
        sys.exit(128 + e.sigval)
    except ChildFailedError as e:  # the failed process printed its error
        sys.exit(e.get_first_failure()[1].exitcode or 1)
    sys.exit(0)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank: torchrun's RANK before the process group is joined, 0 without torchrun."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0: the process that writes checkpoints, logs and TensorBoard, and validates."""
    return rank() == 0


def init(timeout_minutes: float) -> torch.device | None:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU).

    Returns this rank's device when running distributed (None otherwise). A rank that stops answering
    makes the others fail after `timeout_minutes` instead of hanging.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return None
    keep_niceness()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local_rank))
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo", timeout=timeout)
    return torch.device("cpu")


def group_niceness(text: str) -> int | None:
    """The nice value in the text of /proc/<pid>/autogroup ("/autogroup-221 nice 0"); None for a
    process in no autogroup of its own: the file is then empty, as in a session that began with the
    system's first process (a container's first session, where CI may run the tests)."""
    fields = text.split()
    if len(fields) != 3 or fields[1] != "nice":
        return None
    try:
        return int(fields[2])
    except ValueError:
        return None


def keep_niceness() -> bool:
    """Make `nice -n 10 mt train` lower the priority of the processes it starts, as it says.

    torchrun starts each process in a session of its own, and Linux with autogroup scheduling (the
    default of most distributions) shares the CPU among sessions by the nice value of the session's
    group, not of the process: each process would compete at full weight with, say, a test suite in
    another session. In a process that leads its own session and is niced, this gives its group the
    process's nice value. Never in a process that shares its session: the group would be its shell's.
    Returns whether it changed the group's value."""
    path = "/proc/self/autogroup"
    niceness = os.nice(0)
    if niceness <= 0 or os.getsid(0) != os.getpid() or not os.path.exists(path):
        return False
    for _ in range(5):  # the kernel takes one change every 0.1 s from an unprivileged user
        try:
            with open(path) as f:
                current = group_niceness(f.read())
            if current is None or current >= niceness:
                return False
            with open(path, "w") as f:
                f.write(str(niceness))
            return True
        except BlockingIOError:  # EAGAIN: another process's change came first
            time.sleep(0.15)
        except (OSError, ValueError):
            return False
    return False


class PeerFailed(MTError):
    """Rank 0 failed to set the training up (it printed why): the other ranks stop quietly."""


def rank0_outcome(error: str | None = None) -> None:
    """Rank 0 tells the others whether it set the training up (`error`: why not); on the others,
    this waits for it and raises PeerFailed if it did not."""
    if not dist.is_initialized():
        return
    box = [error]
    dist.broadcast_object_list(box, src=0)
    if not is_main() and box[0] is not None:
        raise PeerFailed(box[0])


def all_sum(value: float, device: torch.device) -> float:
    """The sum of `value` over all ranks."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor)


def all_max(value: float, device: torch.device) -> float:
    """The largest `value` of all ranks: so that all ranks stop together."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor)


def shutdown(together: bool = False) -> None:
    """Leave the process group; `together`: wait for every rank first (the end of a training they
    all reached), so no rank exits while another still talks to it."""
    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between updates (a second signal,
    seconds later: exit now)."""

    # a Ctrl-C reaches both torchrun and its processes, and torchrun passes it on: a second signal
    # this soon after the first is the same request
    SAME_REQUEST_SECONDS = 2.0

    def __init__(self):
        self.requested: str | None = None
        self.requested_at = 0.0
        self.previous = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            if time.monotonic() - self.requested_at < self.SAME_REQUEST_SECONDS:
                return
            raise KeyboardInterrupt
        self.requested, self.requested_at = signal.Signals(signum).name, time.monotonic()

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def agree_to_stop(
    reason: str | None, stop: StopRequest, device: torch.device
) -> tuple[str | None, bool]:
    """(reason to stop or None, interrupted by a signal), the same on every rank.

    `reason` is rank 0's (only it validates, so only it knows the patience); a signal on any rank
    stops all of them.
    """
    code = 2 if stop.requested else 1 if reason else 0
    code = int(all_max(code, device))
    if code == 2:
        return f"stopped by {stop.requested or 'a signal to another rank'}", True
    return (reason or "rank 0 reached a limit") if code else None, False

"""Data-parallel training under `torchrun`: process group set-up, who does what, and how the ranks
agree to stop (limits, signals).

Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op for a single process.
"""

from __future__ import annotations

import datetime
import os
import signal

import torch
import torch.distributed as dist


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
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local_rank))
        return torch.device("cuda", local_rank)
    dist.init_process_group("gloo", timeout=timeout)
    return torch.device("cpu")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


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
    """Turns SIGINT/SIGTERM into a flag the loop checks between updates (a second signal: exit now)."""

    def __init__(self):
        self.requested: str | None = None
        self.previous = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

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

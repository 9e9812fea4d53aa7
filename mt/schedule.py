"""Learning-rate schedules: a factor of the peak rate for each update."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("inverse_sqrt", "linear", "cosine", "plateau")


def inverse_sqrt(warmup: int) -> Callable[[int], float]:
    """Linear warm-up to 1 at `warmup` updates, then sqrt(warmup / step) (Vaswani et al. 2017)."""

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step))

    return factor


def to_zero(warmup: int, total: int, shape: str) -> Callable[[int], float]:
    """Linear warm-up to 1 at `warmup` updates, then down to 0 at update `total`, in a straight line
    (`linear`) or half a cosine (`cosine`): for a run whose length is known, the rate anneals by its
    end instead of staying at sqrt(warmup / total) of the peak."""
    if total <= warmup:
        raise ValueError(f"a schedule to zero needs more updates ({total}) than warm-up ({warmup})")

    def factor(step: int) -> float:
        step = max(step, 1)
        if step < warmup:
            return step / warmup
        done = min((step - warmup) / (total - warmup), 1.0)
        return 1.0 - done if shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


def warmup_only(warmup: int) -> Callable[[int], float]:
    """Linear warm-up to 1 at `warmup` updates, then 1: the shape of `plateau`, whose decreases
    (train.plateau_factor after train.plateau_patience validations without a better dev score)
    the trainer applies on top, as they depend on the dev scores."""

    def factor(step: int) -> float:
        return min(max(step, 1) / warmup, 1.0)

    return factor


def schedule(name: str, warmup: int, total: int) -> Callable[[int], float]:
    """The factor of schedule `name` (SCHEDULES) for a run of `total` updates (`plateau`: before its
    decreases, which the trainer multiplies in)."""
    if name == "plateau":
        return warmup_only(warmup)
    if name == "inverse_sqrt":
        return inverse_sqrt(warmup)
    if name in ("linear", "cosine"):
        return to_zero(warmup, total, name)
    raise ValueError(f"unknown schedule {name!r}: one of {', '.join(SCHEDULES)}")

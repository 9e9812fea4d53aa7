"""Learning-rate schedules: a factor of the peak rate for each update."""

from __future__ import annotations

import math
from collections.abc import Callable


def inverse_sqrt(warmup: int) -> Callable[[int], float]:
    """Linear warm-up to 1 at `warmup` updates, then sqrt(warmup / step) (Vaswani et al. 2017)."""

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step))

    return factor

"""Learning-rate schedules as pure functions of the step (so a resumed run needs no extra state).

>>> lr_at(0, base_lr=0.1, total_steps=100, warmup_steps=10)  # doctest: +ELLIPSIS
0.0333...
>>> round(lr_at(10, base_lr=0.1, total_steps=100, warmup_steps=0, schedule="step", milestones=(5,)), 6)
0.01
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["lr_at", "WARMUP_START"]

WARMUP_START = 1.0 / 3.0
"""The warm-up starts at this fraction of the base learning rate and rises linearly to 1."""


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Linear warm-up from ``WARMUP_START * base_lr`` over ``warmup_steps``, multiplied by the schedule:
    ``cosine`` (half a cosine from 1 to 0 over ``total_steps``), ``step`` (times ``gamma`` at each
    milestone reached) or ``constant``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    elif schedule == "step":
        factor = gamma ** sum(1 for m in milestones if step >= m)
    elif schedule == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use cosine, step or constant")
    if warmup_steps > 0 and step < warmup_steps:
        factor *= WARMUP_START + (1.0 - WARMUP_START) * step / warmup_steps
    return base_lr * factor

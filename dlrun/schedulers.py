"""A learning-rate scheduler with when it steps, and the optional linear warmup in front of it."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LinearLR, SequentialLR

WARMUP_START_FACTOR = 0.01  # warmup starts at 1% of the learning rate


@dataclass
class ScheduledLR:
    scheduler: object  # a torch.optim.lr_scheduler instance
    interval: str = "epoch"  # epoch | step
    monitor: str | None = None  # ReduceLROnPlateau: the metric passed to step()


def schedule(
    make_scheduler: Callable,
    optimizer: torch.optim.Optimizer,
    *,
    interval: str = "epoch",
    warmup_epochs: int = 0,
    monitor: str | None = None,
    steps_per_epoch: int = 1,
) -> ScheduledLR:
    """make_scheduler(optimizer) is the configured scheduler; warmup ramps the rate up linearly before it."""
    scheduler = make_scheduler(optimizer)
    if warmup_epochs:
        warmup_steps = warmup_epochs * (steps_per_epoch if interval == "step" else 1)
        warmup = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup_steps)
        scheduler = SequentialLR(optimizer, [warmup, scheduler], milestones=[warmup_steps])
    return ScheduledLR(scheduler, interval, monitor)

"""The optimizer steps: gradients scaled for float16 (GradScaler), clipped, accumulated over batches, or stepped by a
task itself (manual optimization); and the learning-rate schedulers, stepped per optimizer step or per epoch."""

from collections.abc import Collection, Iterable

import torch
from torch import Tensor

from dlrun.errors import ConfigError
from dlrun.schedulers import ScheduledLR


class Optimization:
    def __init__(
        self,
        scaler: torch.amp.GradScaler,
        device_type: str,
        *,
        gradient_clip_val: float | None,
        accumulate_grad_batches: int,
    ):
        """trainer.gradient_clip_val and accumulate_grad_batches (conf/trainer/default.yaml); the scaler is the
        trainer's (a checkpoint holds its state), enabled at precision 16; device_type: the one autocast runs on."""
        self.scaler, self.device_type = scaler, device_type
        self.gradient_clip_val = gradient_clip_val
        self.accumulate_grad_batches = accumulate_grad_batches

    def backward(self, loss: Tensor) -> None:
        """The batch's gradients, scaled, added to those of the batches accumulated before it."""
        self.scaler.scale(loss / self.accumulate_grad_batches if self.accumulate_grad_batches > 1 else loss).backward()

    def completes_step(self, batches_done: int, num_batches: int) -> bool:
        """Whether the gradients of the epoch's first `batches_done` batches are due for an optimizer step: every
        accumulate_grad_batches batches, and after the epoch's last."""
        return batches_done % self.accumulate_grad_batches == 0 or batches_done == num_batches

    def step(self, optimizers: Collection[torch.optim.Optimizer]) -> None:
        """An optimizer step of each optimizer on the gradients accumulated; they are zeroed after it."""
        for optimizer in optimizers:
            self._clip_and_step(optimizer)
        self.scaler.update()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)

    def manual_step(self, optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
        """A step a task with manual_optimization asks for: backward of loss, then a step of the optimizer (clipped
        and scaled like any other step); the gradients are zeroed after it."""
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device_type, enabled=False):  # backward outside autocast, as torch advises
            self.scaler.scale(loss).backward()
        self._clip_and_step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def check_manual_settings(self, *, skip_nonfinite: bool) -> None:
        """A task that steps its optimizers itself cannot have its batches accumulated or skipped by the trainer."""
        if self.accumulate_grad_batches > 1:
            raise ConfigError(
                f"trainer.accumulate_grad_batches = {self.accumulate_grad_batches}: this task steps its optimizers "
                "itself; type trainer.accumulate_grad_batches=1"
            )
        if skip_nonfinite:
            raise ConfigError(
                "trainer.nonfinite_loss = skip: this task steps its optimizers itself, so a batch cannot be skipped "
                "after the fact; type trainer.nonfinite_loss=stop"
            )

    def _clip_and_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.gradient_clip_val:
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)
        self.scaler.step(optimizer)


def step_schedulers(schedulers: Iterable[ScheduledLR], interval: str, metrics: dict[str, float] | None = None) -> None:
    """Step the schedulers of this interval (step | epoch); a plateau scheduler only after a validation, on its
    monitored metric."""
    for scheduled in schedulers:
        if scheduled.interval != interval:
            continue
        if scheduled.monitor is None:
            scheduled.scheduler.step()
        elif scheduled.monitor in (metrics or {}):
            scheduled.scheduler.step(metrics[scheduled.monitor])


def learning_rates(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
    """train/lr, or train/lr_<name> for each of several optimizers (a GAN's)."""
    rates = {name: optimizer.param_groups[0]["lr"] for name, optimizer in optimizers.items()}
    if len(rates) == 1:
        return {"train/lr": next(iter(rates.values()))}
    return {f"train/lr_{name}": rate for name, rate in rates.items()}

"""Stop training when the monitored metric has not improved for `patience` validations, or once it reaches
`stop_at` (a score that cannot be beaten: CartPole's return of 500). A run it stops says why and when, on the
terminal and in the run dir's dlrun.log."""

import logging

from rich.console import Console

from dlrun.callbacks.base import Callback, is_improvement

log = logging.getLogger(__name__)


class EarlyStopping(Callback):
    on_every_rank = True  # every rank must stop at the same epoch

    def __init__(
        self,
        *,
        monitor: str = "val/loss",
        mode: str = "min",
        patience: int = 10,
        min_delta: float = 0.0,
        stop_at: float | None = None,
        quiet: bool = False,
    ):
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = patience, min_delta
        self.stop_at = stop_at
        self.console = Console(quiet=quiet)
        self.best: float | None = None
        self.best_epoch: int | None = None  # the epoch (from 1) that scored best
        self.wait = 0  # validations since the last improvement
        self.reached: float | None = None  # the value that reached stop_at
        self.stopped_epoch: int | None = None  # the epoch after which it stopped training

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:  # not a validation epoch
            return
        value, epoch = metrics[self.monitor], trainer.state.epoch
        if self.stop_at is not None and (value >= self.stop_at if self.mode == "max" else value <= self.stop_at):
            self.reached = value
            self._stop(trainer)
        if is_improvement(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self._stop(trainer)

    def on_fit_end(self, trainer) -> None:
        """Say why training ended before trainer.max_epochs (also when a resume finds it stopped already)."""
        if self.stopped_epoch is None or self.stopped_epoch >= trainer.max_epochs or not trainer.world.is_main:
            return
        message = f"early stopping: {self._reason()}; stopped after epoch {self.stopped_epoch} of {trainer.max_epochs}"
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)
        into_run_log(message)

    def _stop(self, trainer) -> None:
        trainer.state.should_stop = True
        self.stopped_epoch = trainer.state.epoch

    def _reason(self) -> str:
        if self.reached is not None:
            return f"{self.monitor} = {self.reached:.4g} reached callbacks.early_stopping.stop_at={self.stop_at:g}"
        patience = f"callbacks.early_stopping.patience={self.patience}"
        if self.best is None:  # NaN at every validation
            return f"{self.monitor} was NaN at each of {self.wait} validations ({patience})"
        by = f" by more than {self.min_delta:g}" if self.min_delta else ""
        if self.best_epoch is None:  # resumed from a checkpoint written before best_epoch was
            return f"{self.monitor} did not improve on {self.best:.4g}{by} for {self.wait} validations ({patience})"
        since = self.stopped_epoch - self.best_epoch
        return (
            f"{self.monitor} did not improve on {self.best:.4g}{by} (epoch {self.best_epoch}) for {since} epochs "
            f"({patience})"
        )

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "reached": self.reached,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state.get("best"), state.get("best_epoch"), state.get("wait", 0)
        self.reached, self.stopped_epoch = state.get("reached"), state.get("stopped_epoch")


def into_run_log(message: str) -> None:
    """The message into dlrun.log only (the file handler Hydra's job logging gives the root logger): the terminal
    has the console's line, which a record through Hydra's console handler would repeat."""
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, message, (), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)

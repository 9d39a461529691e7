"""Report the monitored validation metric to the job's Optuna trial each epoch; stop a trial the pruner gives up on.

A pruned trial ends like an early-stopped run (its best checkpoint is tested, metrics.json written) and shows as
pruned in the sweep summary and in the study. Outside an Optuna search (no trial) the callback does nothing.
"""

from dlrun.callbacks.base import Callback
from dlrun.sweep import trials


class OptunaPruning(Callback):
    def __init__(self, *, monitor: str = "val/loss", trial=None):
        """trial: an optuna.trial.Trial; by default the one dlrun's Optuna sweeper gave the job training now."""
        self.monitor = monitor
        self.handle = trials.TrialHandle(trial) if trial is not None else trials.current()

    @property
    def pruned(self) -> bool:
        return self.handle is not None and self.handle.pruned

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        if self.handle is None or self.monitor not in metrics:  # no search, or not a validation epoch
            return
        epoch = trainer.state.epoch  # completed epochs
        self.handle.trial.report(metrics[self.monitor], step=epoch - 1)  # the trial's steps count from 0
        if self.handle.trial.should_prune():
            self.handle.pruned_at_epoch = epoch
            trainer.state.should_stop = True

"""How an Optuna trial reaches the training loop of its job, for pruning: a registry by job number.

dlrun's Optuna sweeper registers each trial under the number of the job that runs it; the job (dlrun.sweep.job)
makes its own the current one while it trains; the OptunaPruning callback reports to it each epoch and marks it
pruned. Jobs run by the sweeper's own process (the basic launcher) find their trial here; a job in another process
(the joblib or SLURM launcher) finds none and trains to the end. Imports no optuna.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class TrialHandle:
    trial: Any  # an optuna.trial.Trial
    pruned_at_epoch: int | None = None  # set by the OptunaPruning callback when the pruner stopped the trial

    @property
    def pruned(self) -> bool:
        return self.pruned_at_epoch is not None


_registered: dict[int, TrialHandle] = {}
_current: TrialHandle | None = None


def register(job_num: int, trial: Any) -> TrialHandle:
    handle = _registered[job_num] = TrialHandle(trial)
    return handle


def unregister(job_num: int) -> None:
    _registered.pop(job_num, None)


@contextmanager
def active(job_num: int | None) -> Iterator[TrialHandle | None]:
    """While a job trains: its trial, if the sweeper registered one in this process, is the current one."""
    global _current
    previous, _current = _current, _registered.get(job_num) if job_num is not None else None
    try:
        yield _current
    finally:
        _current = previous


def current() -> TrialHandle | None:
    """The trial of the job training now in this process; None outside an Optuna search."""
    return _current

"""The settings of hydra/sweeper=dlrun_optuna (hydra.sweeper.*), type-checked by Hydra."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class DlrunOptunaSweeperConf:
    _target_: str = "hydra_plugins.dlrun_optuna_sweeper.optuna_sweeper.DlrunOptunaSweeper"
    # minimize | maximize: must agree with the metric (val/loss: minimize, val/acc: maximize)
    direction: str = "minimize"
    # the metric to optimise: null for the value each run returns (callbacks.checkpoint.monitor of its best
    # checkpoint), or a name in the job's metrics.json, e.g. val/acc
    metric: str | None = None
    # trials in the study in all: a resumed search runs only those still missing
    n_trials: int = 20
    # trials launched together; >1 runs them in parallel with a parallel launcher (hydra/launcher=joblib), unpruned
    n_jobs: int = 1
    # the study's name in the storage
    study_name: str = "dlrun"
    # where the study lives: SQLite in the sweep dir, so that `-m ... hydra.sweep.dir=<same dir>` resumes it;
    # null keeps it in memory (lost at the end)
    storage: str | None = "sqlite:///${hydra.sweep.dir}/optuna.db"
    # an optuna.samplers class and its arguments, e.g. TPESampler (default), RandomSampler, CmaEsSampler, GridSampler
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # an optuna.pruners class and its arguments, e.g. MedianPruner; null never prunes. Needs the OptunaPruning
    # callback in the job (callbacks.optuna_pruning, set by the hparams_search presets)
    pruner: Any = None
    # the search space: key -> Hydra sweep syntax. interval(a, b) a float range, tag(log, interval(a, b)) a log
    # range, tag(int, interval(a, b)) an integer range, range(a, b, step) a stepped one, choice(x, y, z) or x,y,z
    # choices (lists too: choice([64], [128, 64])); a plain value fixes the key. Sweeps typed on the command line
    # join (and win over) these.
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="dlrun_optuna", node=DlrunOptunaSweeperConf, provider="dlrun_optuna_sweeper"
)

"""Repeats: one configuration trained with several seeds, and the mean and std of its metrics over them.

`dlrun -m repeats=3 optimizer=adam,sgd` sweeps seed over seed, seed+1, seed+2 for each configuration, through the
basic sweeper's own hydra.sweeper.params (set when the sweep starts, so multirun.yaml records it);
`dlrun -m seed=0,1,2 optimizer=adam,sgd` is the same with seeds of your choice. The summary groups the jobs whose
overrides differ only in seed: one Repeat per configuration. Imports no torch.
"""

import math
import statistics
from dataclasses import dataclass, field

from omegaconf import DictConfig, open_dict, read_write

from dlrun.errors import ConfigError
from dlrun.sweep.record import COMPLETED

SEED = "seed"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_seeds(config: DictConfig) -> None:
    """With repeats=N > 1, make the sweep run each configuration with seeds seed .. seed+N-1."""
    swept = [arg for arg in config.hydra.overrides.task if arg.startswith("repeats=") and "," in arg]  # repeats=1,2
    if swept:
        raise ConfigError(f"{swept[0]}: repeats takes one number, not a sweep; type e.g. repeats=3")
    repeats = config.get("repeats", 1)
    if repeats == 1:
        return
    if repeats < 1:
        raise ConfigError(f"repeats = {repeats}: must be 1 or more; type e.g. repeats=3 (3 seeds per configuration)")
    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        raise ConfigError(
            f"repeats = {repeats}: works with Hydra's basic sweeper, not {sweeper.get('_target_')}; "
            f"leave out repeats (a search runs each trial once)"
        )
    typed = [override for override in config.hydra.overrides.task if override.split("=", 1)[0].lstrip("+~") == SEED]
    if typed or SEED in (sweeper.get("params") or {}):
        seeds = ",".join(str(seed) for seed in range(config.seed, config.seed + repeats))
        raise ConfigError(
            f"repeats = {repeats}: sweeps the seed itself, so it cannot go with "
            f"{' '.join(typed) or 'hydra.sweeper.params.seed'}; leave out repeats to run the seeds you typed, "
            f"or type seed={seeds} alone"
        )
    with read_write(sweeper), open_dict(sweeper):
        sweeper.params = {**(sweeper.get("params") or {}), SEED: f"range({config.seed},{config.seed + repeats})"}


def refuse_outside_sweep(config: DictConfig) -> None:
    """A single run has one seed: repeats > 1 needs -m."""
    if config.get("repeats", 1) != 1:
        raise ConfigError(
            f"repeats = {config.repeats}: repeats a configuration over seeds in a sweep; type dlrun -m "
            f"repeats={config.repeats} ... (or leave out repeats for a single run)"
        )


@dataclass
class Stat:
    mean: float
    std: float | None  # the sample standard deviation (n - 1); None for a single value

    @classmethod
    def of(cls, values: list[float]) -> "Stat":
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class Repeat:
    """One configuration of a sweep with repeats: its jobs (one per seed) and their completed jobs' statistics."""

    config: int  # 0, 1, ...: in the order of its first job
    params: dict[str, str]  # the swept overrides but seed
    jobs: list  # dlrun.sweep.summary.Job, one per seed
    metric: str  # the monitored metric of its jobs
    mode: str  # min | max
    value: Stat | None = None  # of the monitored metric over the completed jobs
    metrics: dict[str, Stat] = field(default_factory=dict)  # of each metrics.json value over the completed jobs
    best: bool = False

    @property
    def completed(self) -> list:
        return [job for job in self.jobs if job.status == COMPLETED]

    @property
    def seeds(self) -> list[str]:
        return [job.params.get(SEED, "") for job in self.jobs]


def group(jobs: list, varying: list[str]) -> list[Repeat]:
    """The sweep's configurations when its jobs differ in seed: jobs with the same other swept overrides together;
    [] when seed is not swept."""
    if SEED not in varying:
        return []
    others = [key for key in varying if key != SEED]
    repeats: dict[tuple, Repeat] = {}
    for job in jobs:
        params = {key: job.params.get(key) for key in others}
        key = tuple(params.items())
        if key not in repeats:
            repeats[key] = Repeat(len(repeats), params, [], job.metric, job.mode)
        repeats[key].jobs.append(job)
    for repeat in repeats.values():
        done = repeat.completed
        values = [job.value for job in done if _finite(job.value)]
        repeat.value = Stat.of(values) if values else None
        names = sorted({name for job in done for name in job.metrics})
        repeat.metrics = {
            name: Stat.of([job.metrics[name] for job in done if _finite(job.metrics.get(name))])
            for name in names
            if any(_finite(job.metrics.get(name)) for job in done)
        }
    _mark_best(list(repeats.values()))
    return list(repeats.values())


def _mark_best(repeats: list[Repeat]) -> None:
    """The configuration with the best mean, when they compare: one metric, mode and dataset."""
    candidates = [repeat for repeat in repeats if repeat.value is not None]
    kinds = {(repeat.metric, repeat.mode, job.dataset) for repeat in candidates for job in repeat.completed}
    if not candidates or len(kinds) > 1:
        return
    pick = max if candidates[0].mode == "max" else min
    pick(candidates, key=lambda repeat: repeat.value.mean).best = True


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)

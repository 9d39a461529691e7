"""The summary of a sweep dir: every job's overrides, status, metric, test metrics and time, the best marked.

Read from job.json and metrics.json of each job (written by dlrun.sweep.job and dlrun.run), written to the sweep
dir's summary.csv and summary.json; dlrun.sweep.table shows it, dlrun.sweep.cli is `dlrun-summary`. Imports no torch.
"""

import csv
import io
import math
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from dlrun import atomic, provenance
from dlrun.sweep.record import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    NOT_RUN,
    PRUNED,
    RUNNING,
    JobRecord,
    read_metrics,
    write_json,
)
from dlrun.sweep.repeats import SEED, Repeat, Stat, group

SUMMARY_CSV, SUMMARY_JSON = "summary.csv", "summary.json"
OPTUNA_RESULTS = "optimization_results.yaml"  # written by dlrun's Optuna sweeper
STATUS_ORDER = (COMPLETED, PRUNED, RUNNING, INTERRUPTED, FAILED, NOT_RUN)  # of the counts under the table


@dataclass
class Job:
    num: int | None
    dir: Path
    overrides: list[str]
    status: str
    metric: str  # the metric the best job is chosen by: the monitored one, or the Optuna search's objective
    mode: str  # min | max
    dataset: str | None
    value: float | None  # that metric's final value
    metrics: dict[str, float] = field(default_factory=dict)  # metrics.json: val/* and test/* of the best checkpoint
    duration_s: float | None = None
    attempts: int = 0
    note: str | None = None
    error: str | None = None
    exit_code: int | None = None
    best: bool = False

    @property
    def params(self) -> dict[str, str]:
        return dict(override.split("=", 1) if "=" in override else (override, "") for override in self.overrides)


@dataclass
class Summary:
    sweep_dir: Path
    jobs: list[Job]
    varying: list[str]  # override keys whose value differs between jobs: one column each
    fixed: list[str]  # overrides every job shares
    expected: int | None = None  # jobs the whole sweep will have, when known
    best: Job | None = None
    optuna: dict | None = None  # optimization_results.yaml of an Optuna search
    resume: str | None = None  # the command that finishes the sweep, when jobs are missing and none runs
    repeats: list[Repeat] = field(default_factory=list)  # one per configuration when the jobs differ in seed
    differences: dict = field(default_factory=dict)  # provenance.json keys whose values differ: {key: {value: dirs}}

    def counts(self) -> dict[str, int]:
        """Jobs by status, in STATUS_ORDER."""
        statuses = [job.status for job in self.jobs]
        order = [*STATUS_ORDER, *sorted(set(statuses) - set(STATUS_ORDER))]
        return {status: statuses.count(status) for status in order if status in statuses}

    def exit_code(self) -> int:
        codes = [job.exit_code or 1 for job in self.jobs if job.status == FAILED]
        return min(codes) if codes else 0


# -- reading a sweep dir ----------------------------------------------------------------------------


def collect(sweep_dir: str | Path) -> Summary:
    sweep_dir = Path(sweep_dir)
    multirun = _load_yaml(sweep_dir / "multirun.yaml")
    objective = _objective(multirun)
    jobs = sorted(
        (_read_job(job_dir, objective) for job_dir in _job_dirs(sweep_dir)),
        key=lambda job: (job.num is None, job.num if job.num is not None else 0, str(job.dir)),
    )
    varying, fixed = _split_overrides(jobs)
    summary = Summary(sweep_dir, jobs, varying, fixed, expected=_expected_jobs(multirun, len(jobs)))
    summary.best = _mark_best(jobs)
    summary.repeats = group(jobs, varying)
    records = {_relative(job.dir, sweep_dir): provenance.read(job.dir) for job in jobs}
    summary.differences = provenance.differences({label: record for label, record in records.items() if record})
    optuna = _load_yaml(sweep_dir / OPTUNA_RESULTS)
    summary.optuna = OmegaConf.to_container(optuna) if optuna is not None else None
    summary.resume = _resume_command(summary, multirun)
    return summary


def _job_dirs(sweep_dir: Path) -> list[Path]:
    found = {path.parent for path in sweep_dir.rglob("job.json")}
    found |= {path.parent for path in sweep_dir.rglob(".hydra") if path.is_dir()}
    return [path for path in found if path != sweep_dir and ".submitit" not in path.parts]


def _read_job(job_dir: Path, objective: tuple[str | None, str | None]) -> Job:
    record = JobRecord.load(job_dir)
    metrics = read_metrics(job_dir) or {}
    if record is None:  # a job dir without job.json: a job killed at its very start, or not run by dlrun
        record = _record_from_hydra(job_dir, finished=bool(metrics))
    status = record.live_status()
    if status in (RUNNING, INTERRUPTED) and metrics:
        status = COMPLETED  # it wrote its metrics.json and was stopped just after
    metric, mode = objective[0] or record.monitor, objective[1] or record.mode
    value = metrics.get(metric, record.value if metric == record.monitor else None)
    duration = record.duration_s
    if status == RUNNING and record.started is not None:
        duration += time.time() - record.started
    return Job(
        num=record.num,
        dir=job_dir,
        overrides=list(record.overrides),
        status=status,
        metric=metric,
        mode=mode,
        dataset=record.dataset,
        value=value,
        metrics=metrics,
        duration_s=duration if record.attempts or record.started else None,
        attempts=record.attempts,
        note=record.note,
        error=record.error,
        exit_code=record.exit_code,
    )


def _record_from_hydra(job_dir: Path, finished: bool) -> JobRecord:
    overrides = _load_yaml(job_dir / ".hydra" / "overrides.yaml")
    config = _load_yaml(job_dir / ".hydra" / "config.yaml")
    hydra = _load_yaml(job_dir / ".hydra" / "hydra.yaml")
    num = OmegaConf.select(hydra, "hydra.job.num", default=None) if hydra is not None else None
    if num is None and job_dir.name.isdigit():
        num = int(job_dir.name)

    def select(key, default):
        if config is None:
            return default
        return OmegaConf.select(config, key, default=default, throw_on_resolution_failure=False)

    record = JobRecord(
        num=num,
        overrides=list(overrides) if overrides is not None else [],
        status=COMPLETED if finished else INTERRUPTED,
        monitor=select("callbacks.checkpoint.monitor", "val/loss"),
        mode=select("callbacks.checkpoint.mode", "min"),
        dataset=select("dataset.name", None),
    )
    record.pid = -1  # no process to look for
    return record


def _load_yaml(path: Path):
    try:
        return OmegaConf.load(path)
    except (OSError, ValueError):
        return None
    except Exception:  # noqa: BLE001 - a half-written or foreign file: read as absent
        return None


def _objective(multirun) -> tuple[str | None, str | None]:
    """(metric, mode) of an Optuna search, which every job is judged by; (None, None): each job's monitor."""
    sweeper = OmegaConf.select(multirun, "hydra.sweeper", default=None) if multirun is not None else None
    if sweeper is None or "dlrun_optuna_sweeper" not in str(sweeper.get("_target_", "")):
        return None, None
    metric = sweeper.get("metric")
    return metric, "max" if sweeper.get("direction") == "maximize" else "min"


def _split_overrides(jobs: list[Job]) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    for job in jobs:
        keys += [key for key in job.params if key not in keys]
    values = {key: {job.params.get(key) for job in jobs} for key in keys}
    varying = [key for key in keys if len(values[key]) > 1]
    fixed = [f"{key}={next(iter(values[key]))}" for key in keys if len(values[key]) == 1]
    return varying, fixed


def _mark_best(jobs: list[Job]) -> Job | None:
    """The completed job with the best value, if the completed jobs compare: one metric, mode and dataset."""
    candidates = [job for job in jobs if job.status == COMPLETED and _finite(job.value)]
    if not candidates or len({(job.metric, job.mode, job.dataset) for job in candidates}) > 1:
        return None
    best = (max if candidates[0].mode == "max" else min)(candidates, key=lambda job: job.value)
    best.best = True
    return best


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _expected_jobs(multirun, found: int) -> int | None:
    """Jobs the whole sweep makes: n_trials of an Optuna search; the product of the sweep lists for the basic
    sweeper; None when unknown (a glob over a config group, another sweeper)."""
    if multirun is None:
        return None
    sweeper = str(OmegaConf.select(multirun, "hydra.sweeper._target_", default=""))
    if "dlrun_optuna_sweeper" in sweeper:
        return max(int(OmegaConf.select(multirun, "hydra.sweeper.n_trials", default=0) or 0), found)
    if not sweeper.endswith("BasicSweeper"):
        return None
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = OmegaConf.select(multirun, "hydra.sweeper.params", default=None) or {}
        arguments = [f"{key}={value}" for key, value in params.items()] + list(multirun.hydra.overrides.task)
        by_key = {
            override.get_key_element(): override for override in OverridesParser.create().parse_overrides(arguments)
        }
        overrides = by_key.values()  # the command line wins over hydra.sweeper.params, as in the basic sweeper
        total = 1
        for override in overrides:
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return max(total, found)
    except Exception:  # noqa: BLE001 - a glob needs the config loader: unknown
        return None


def _resume_command(summary: Summary, multirun) -> str | None:
    """How to finish the sweep: the same command into the same sweep dir (done jobs are skipped)."""
    statuses = {job.status for job in summary.jobs}
    missing = (summary.expected or 0) > len(summary.jobs) or statuses & {FAILED, INTERRUPTED, NOT_RUN}
    if multirun is None or not missing or RUNNING in statuses:
        return None
    hydra_overrides = [
        override
        for override in OmegaConf.select(multirun, "hydra.overrides.hydra", default=[])
        if not override.startswith(("hydra.sweep.dir=", "hydra.mode="))
    ]
    arguments = [*multirun.hydra.overrides.task, *hydra_overrides, f"hydra.sweep.dir={summary.sweep_dir}"]
    return "dlrun -m " + " ".join(shlex.quote(str(argument)) for argument in arguments)


# -- writing ----------------------------------------------------------------------------------------


def rows(summary: Summary) -> list[dict]:
    """One plain dict per job, as summary.json holds them."""
    return [
        {
            "job": job.num,
            "dir": _relative(job.dir, summary.sweep_dir),
            "status": job.status,
            "overrides": job.overrides,
            "params": {key: job.params.get(key) for key in summary.varying},
            "metric": job.metric,
            "value": job.value,
            "best": job.best,
            "duration_s": None if job.duration_s is None else round(job.duration_s, 2),
            "attempts": job.attempts,
            "metrics": job.metrics,
            "note": job.note,
            "error": job.error,
        }
        for job in summary.jobs
    ]


def write(summary: Summary) -> None:
    """summary.json, summary.csv and the HParams experiment of TensorBoard in the sweep dir."""
    _write_files(summary)
    from dlrun.sweep import hparams

    metrics = sorted(
        {job.metric for job in summary.jobs} | {n for job in summary.jobs for n in job.metrics if n.startswith("test/")}
    )
    hparams.write_experiment(summary.sweep_dir, [job.dir for job in summary.jobs], metrics)


def _write_files(summary: Summary) -> None:
    best = summary.best
    write_json(
        summary.sweep_dir / SUMMARY_JSON,
        {
            "sweep_dir": str(summary.sweep_dir),
            "counts": summary.counts(),
            "expected_jobs": summary.expected,
            "fixed_overrides": summary.fixed,
            "varying": summary.varying,
            "best": None
            if best is None
            else {"job": best.num, "metric": best.metric, "value": best.value, "overrides": best.overrides},
            "optuna": summary.optuna,
            "resume": summary.resume,
            "jobs": rows(summary),
            "repeats": [_repeat_row(repeat) for repeat in summary.repeats],
            "provenance_differences": summary.differences,
        },
    )
    metric_names = sorted({name for job in summary.jobs for name in job.metrics})
    spread = bool(summary.repeats)  # a sweep with repeats: a std column after each metric, n, and a row per config

    def with_std(name: str) -> list[str]:
        return [name, f"{name} std"] if spread else [name]

    header = ["job", *(["config"] if spread else []), "status", *summary.varying, "metric", *with_std("value")]
    header += [*(["n"] if spread else []), "best", "duration_s", "attempts"]
    header += [column for name in metric_names for column in with_std(name)]
    header += ["overrides", "note", "error", "dir"]
    config_of = {id(job): repeat.config for repeat in summary.repeats for job in repeat.jobs}
    lines = [
        {
            "job": job.num,
            "config": config_of.get(id(job)),
            "status": job.status,
            **row["params"],
            "metric": job.metric,
            "value": job.value,
            "best": job.best,
            "duration_s": row["duration_s"],
            "attempts": job.attempts,
            **job.metrics,
            "overrides": " ".join(job.overrides),
            "note": job.note,
            "error": job.error,
            "dir": row["dir"],
        }
        for job, row in zip(summary.jobs, rows(summary), strict=True)
    ]
    lines += [_repeat_line(repeat, summary) for repeat in summary.repeats]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(lines)
    atomic.write(summary.sweep_dir / SUMMARY_CSV, buffer.getvalue())


def _repeat_line(repeat: Repeat, summary: Summary) -> dict:
    """summary.csv's row of a configuration: job "mean", its seeds, the mean and std of each value over its completed
    jobs and their count n."""
    line = {"job": "mean", "config": repeat.config, "metric": repeat.metric, "n": len(repeat.completed)}
    line |= {"status": ", ".join(f"{count} {status}" for status, count in _statuses(repeat).items())}
    line |= {**repeat.params, SEED: " ".join(repeat.seeds), "best": repeat.best}
    durations = [job.duration_s for job in repeat.completed if job.duration_s is not None]
    line["duration_s"] = round(Stat.of(durations).mean, 2) if durations else None
    for name, stat in [("value", repeat.value), *repeat.metrics.items()]:
        if stat is not None:
            line |= {name: stat.mean, f"{name} std": stat.std}
    shared = [override for override in repeat.jobs[0].overrides if override.split("=", 1)[0] != SEED]
    line["overrides"] = " ".join(shared)
    line["dir"] = " ".join(_relative(job.dir, summary.sweep_dir) for job in repeat.jobs)
    return line


def _repeat_row(repeat: Repeat) -> dict:
    """summary.json's entry of a configuration."""
    return {
        "config": repeat.config,
        "params": repeat.params,
        "jobs": [job.num for job in repeat.jobs],
        "seeds": repeat.seeds,
        "n": len(repeat.completed),
        "metric": repeat.metric,
        "value": None if repeat.value is None else asdict(repeat.value),
        "best": repeat.best,
        "metrics": {name: asdict(stat) for name, stat in repeat.metrics.items()},
    }


def _statuses(repeat: Repeat) -> dict[str, int]:
    statuses = [job.status for job in repeat.jobs]
    return {status: statuses.count(status) for status in STATUS_ORDER if status in statuses}


def _relative(path: Path, sweep_dir: Path) -> str:
    try:
        return str(path.relative_to(sweep_dir))
    except ValueError:
        return str(path)

"""One job of a sweep (`dlrun -m`), around the training of a single run.

- A job that finished before (job.json says so and metrics.json is there) is skipped: a sweep run again into the
  same hydra.sweep.dir does only what is missing.
- A job with a checkpoints/last.pt but no metrics.json was interrupted: it resumes from that last.pt.
- A failure (bad configuration or a bug) is recorded in job.json and printed, and the sweep goes on; with
  hydra.callbacks.sweep.stop_on_failure=true the jobs after it are recorded as not run instead.
- Parallel jobs (the joblib launcher) share the CPUs (torch threads) and take one GPU each while there are enough;
  job.json records the device each trained on.
- A job dir is locked as a single run's is (dlrun/run_dir.py): a job another process holds is named and not run.
"""

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from dlrun.errors import EXIT_BAD_INPUT, ConfigError, report
from dlrun.run_dir import lock
from dlrun.sweep import resources, trials
from dlrun.sweep.record import (
    COMPLETED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    NOT_RUN,
    PRUNED,
    STOP_FILE,
    JobRecord,
    read_metrics,
)

log = logging.getLogger(__name__)

EXIT_BUG = 1  # a bug in the code: its traceback is kept

Train = Callable[[DictConfig, Path], float | None]


def run_job(cfg: DictConfig, train: Train) -> float | None:
    """Run train(cfg, job_dir) as one job of the current sweep; returns its monitored metric, None if it failed."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    job_dir = Path(hydra.runtime.output_dir)
    sweep_dir = Path(hydra.sweep.dir)
    try:
        held = lock(job_dir, key=f"job {hydra.job.num} of hydra.sweep.dir", instead="give a new hydra.sweep.dir")
    except ConfigError as error:  # another process runs this job (the same sweep started twice): its job.json stays
        report(error)
        log.error("job %s not run: %s", hydra.job.num, str(error).splitlines()[0])
        return None
    try:
        return _run_held(cfg, train, hydra, job_dir, sweep_dir)
    finally:
        os.close(held)


def _run_held(cfg: DictConfig, train: Train, hydra, job_dir: Path, sweep_dir: Path) -> float | None:
    """run_job's work, once this process holds the job dir."""
    record = JobRecord(
        num=hydra.job.num,
        overrides=list(hydra.overrides.task),
        monitor=OmegaConf.select(cfg, "callbacks.checkpoint.monitor", default="val/loss"),
        mode=OmegaConf.select(cfg, "callbacks.checkpoint.mode", default="min"),
        dataset=OmegaConf.select(cfg, "dataset.name", default=None),
    )
    previous = JobRecord.load(job_dir)
    metrics = read_metrics(job_dir)
    if previous is not None and sorted(previous.overrides) != sorted(record.overrides):
        ran = " ".join(sorted(set(previous.overrides) - set(record.overrides))) or "no more overrides"
        asked = " ".join(sorted(set(record.overrides) - set(previous.overrides))) or "no more overrides"
        error = ConfigError(
            f"hydra.sweep.dir = {sweep_dir}: job {record.num} there ran {ran}, not {asked}; resume a sweep with "
            "exactly its overrides, or give a new hydra.sweep.dir"
        )
        return _failed(record, error, job_dir, sweep_dir, hydra)
    if previous is not None and previous.status in FINISHED and metrics is not None:
        log.info("job %s finished before (%s): skipped", record.num, job_dir / "metrics.json")
        return metrics.get(previous.monitor, previous.value)
    if _stop_on_failure(hydra) and (sweep_dir / STOP_FILE).exists():
        record.status, record.note = NOT_RUN, "the sweep stopped at the first failure"
        record.save(job_dir)
        return None

    if previous is not None:
        record.attempts, record.duration_s = previous.attempts, previous.duration_s
    own_last = job_dir / "checkpoints" / "last.pt"
    if own_last.is_file():  # an interrupted attempt: continue it (rather than start again from a ckpt_path given)
        cfg.ckpt_path = str(own_last)
        record.note = f"resumed from its last.pt (attempt {record.attempts + 1})"
    record.attempts += 1
    record.torch_threads = _share_cpus(hydra)
    record.started = time.time()
    record.save(job_dir)
    try:
        with _device(cfg, hydra, sweep_dir, record), trials.active(record.num) as trial:
            value = train(cfg, job_dir)
    except Exception as error:  # every failure of one job is recorded, and the sweep goes on
        return _failed(record, error, job_dir, sweep_dir, hydra)
    except BaseException:  # Ctrl-C, SIGTERM (a preempted job): the sweep ends here; running it again resumes
        _finish(record, INTERRUPTED, job_dir)
        raise
    if trial is not None and trial.pruned:
        record.note = f"pruned at epoch {trial.pruned_at_epoch}"
    record.value = value
    _finish(record, PRUNED if trial is not None and trial.pruned else COMPLETED, job_dir)
    return value


def _failed(record: JobRecord, error: Exception, job_dir: Path, sweep_dir: Path, hydra) -> None:
    bad_input = isinstance(error, ConfigError)
    record.error = f"{type(error).__name__}: {error}"
    record.exit_code = EXIT_BAD_INPUT if bad_input else EXIT_BUG
    if bad_input:
        report(error)
    else:
        record.traceback = "".join(traceback.format_exception(error))
        sys.stderr.write(record.traceback)
    log.error("job %s failed: %s", record.num, record.error.splitlines()[0])
    if _stop_on_failure(hydra):
        (sweep_dir / STOP_FILE).write_text(f"job {record.num} failed\n")
    _finish(record, FAILED, job_dir)
    return None


def _finish(record: JobRecord, status: str, job_dir: Path) -> None:
    record.status = status
    if record.started is not None:
        record.duration_s += time.time() - record.started
    record.save(job_dir)


def _stop_on_failure(hydra) -> bool:
    return bool(OmegaConf.select(hydra, "callbacks.sweep.stop_on_failure", default=False))


def _parallel(hydra) -> int:
    launcher = hydra.launcher
    target = launcher.get("_target_")
    return resources.parallel_jobs(target, launcher.get("n_jobs"), resources.available_cpus())


def _share_cpus(hydra) -> int | None:
    """Give this job its share of the CPUs; the number of torch threads set, None if left as torch chose."""
    threads = resources.threads_per_job(
        resources.available_cpus(), _parallel(hydra), os.environ.get("SLURM_CPUS_PER_TASK")
    )
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return threads


@contextmanager
def _device(cfg: DictConfig, hydra, sweep_dir: Path, record: JobRecord) -> Iterator[None]:
    """A parallel job with trainer.device auto or cuda on a machine with several GPUs takes a free one; job.json
    records the device the job trains on."""
    from dlrun.trainer import resolve_device

    device = cfg.trainer.device
    claim = nullcontext(None)
    if device in ("auto", "cuda") and _parallel(hydra) > 1:
        import torch

        if torch.cuda.device_count() > 1:
            claim = resources.claimed_gpu(sweep_dir, torch.cuda.device_count(), record.num or 0)
    with claim as index:
        if index is not None:
            with open_dict(cfg):
                cfg.trainer.device = f"cuda:{index}"
        device = cfg.trainer.device
        record.device = str(resolve_device(device)) if device == "auto" else device  # auto: the device it picks
        yield

"""Parallel jobs on one machine: CPU threads shared out between them, one GPU each while there are enough."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
GPU_LOCKS = ".gpus"  # in the sweep dir: one lock file per GPU, held by the job using it


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs(launcher_target: str | None, n_jobs: int | None, cpus: int) -> int:
    """How many jobs of this sweep train at once on this machine: joblib's n_jobs (-1: one per CPU), else 1."""
    if launcher_target != JOBLIB_LAUNCHER or n_jobs is None:
        return 1
    if n_jobs < 0:  # joblib's convention: -1 all CPUs, -2 all but one, ...
        return max(1, cpus + 1 + n_jobs)
    return max(1, n_jobs)


def threads_per_job(cpus: int, parallel: int, slurm_cpus: str | None = None) -> int | None:
    """torch threads for one job: its share of the CPUs, SLURM's cpus_per_task on a cluster, None to keep torch's."""
    if slurm_cpus:
        return max(1, int(slurm_cpus))
    if parallel <= 1:
        return None
    return max(1, cpus // parallel)


@contextmanager
def claimed_gpu(sweep_dir: Path, gpu_count: int, job_num: int) -> Iterator[int]:
    """The index of a GPU no other job of the sweep holds, held until the block ends (a lock the OS frees when the
    process dies); when every GPU is held, job_num % gpu_count, shared."""
    try:
        import fcntl
    except ImportError:  # not POSIX: round robin
        yield job_num % gpu_count
        return
    folder = sweep_dir / GPU_LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(gpu_count):
        handle = open(folder / f"{index}.lock", "w")  # noqa: SIM115 - held open for the whole block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        try:
            yield index
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    yield job_num % gpu_count

"""One dlrun process per run dir, and no run over an earlier one unless it resumes it.

RunDirGuard (hydra.callbacks.run_dir in conf/config.yaml) acts in Hydra's on_run_start, before Hydra writes the run
dir's .hydra/ files and log: a run dir that holds an earlier run's checkpoints or metrics.json is refused unless the
run resumes it (resume=auto, or a ckpt_path inside it), and so is a disk with too little room to start or a config
that fails validation (dlrun.validation: a bad value leaves no run dir); then the run dir is locked (a POSIX lock,
lockf, on its .dlrun.lock, which holds the PID: the OS frees it when the process ends, even by SIGKILL, and forked
DataLoader workers that outlive a killed run for a moment do not hold it, as they would an flock). A run dir that
another process holds, or that cannot be created or written, exits 2 naming it. A single run refused for bad input
once the job started, before it wrote anything, leaves no run dir either (forget_unstarted). A sweep's
jobs are not guarded here: dlrun.sweep.job resumes their job dirs and takes the same lock on each. Imports no torch.
"""

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError

from dlrun.errors import ConfigError, exit_on_bad_input, first_line
from dlrun.validation import validate

LOCK_FILE = ".dlrun.lock"
HYDRA_OUTPUT, HYDRA_LOG = ".hydra", "dlrun.log"  # what Hydra writes in a run dir before the job starts
EARLIER_RUN = ("metrics.json", "checkpoints/last.pt", "checkpoints/best.pt")  # what a run that got going leaves
MIN_FREE_BYTES = 256 * 1024  # room for what Hydra writes before the run starts (.hydra/, the log), with a margin
HOLDER_WAIT_S = 1.0  # how long to wait for a process that just took the lock to write its PID in it


class RunDirGuard(Callback):
    def __init__(self):
        self.lock: int | None = None  # the open lock file's descriptor while this process holds its run dir

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if int(os.environ.get("RANK", 0)) != 0:  # under torchrun, rank 0 guards the job's run dir
            return
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # hydra.run.dir may read ${hydra:...}, as Hydra's run_job does
        with exit_on_bad_input():
            run_dir = Path(os.path.abspath(_run_dir(config)))  # as Hydra makes it
            refuse_an_earlier_run(run_dir, OmegaConf.select(config, "ckpt_path"), OmegaConf.select(config, "resume"))
            refuse_a_full_disk(run_dir)
            validate(job_config(config))  # every bad value, before the run dir exists
            self.lock = lock(run_dir)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


def job_config(config: DictConfig) -> DictConfig:
    """The config the job will get: Hydra's own node left out, as Hydra's run_job does."""
    job = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    OmegaConf.set_struct(job, True)
    return job


def refuse_an_earlier_run(run_dir: Path, ckpt_path: str | None, resume: str) -> None:
    """A ConfigError when run_dir holds an earlier run that this run would write over without resuming it."""
    found = [name for name in EARLIER_RUN if (run_dir / name).is_file()]
    inside = ckpt_path is not None and Path(ckpt_path).expanduser().resolve().is_relative_to(run_dir.resolve())
    resumes_it = resume == "auto" or inside
    if found and not resumes_it:
        raise ConfigError(
            f"hydra.run.dir = {run_dir}: holds an earlier run ({', '.join(found)}); type resume=auto to continue it, "
            "or leave hydra.run.dir out (a new run dir)"
        )


def lock(run_dir: Path, *, key: str = "hydra.run.dir", instead: str = "leave hydra.run.dir out (a new run dir)") -> int:
    """Create run_dir if need be and hold its lock file, this process's PID written in it: the open descriptor.
    A ConfigError naming the holder when another process holds it, or naming run_dir when it cannot be written;
    key is what the message calls run_dir, instead what else to type."""
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _unwritable(run_dir, error) from error
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
        holder = _holder(descriptor)
        os.close(descriptor)
        raise ConfigError(
            f"{key} = {run_dir}: in use by dlrun process {holder} (it holds {path}); wait for it to end "
            f"(or stop it), or {instead}"
        ) from None
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        os.fsync(descriptor)
    except OSError as error:
        os.close(descriptor)
        raise _unwritable(run_dir, error) from error
    return descriptor


def refuse_a_full_disk(run_dir: Path) -> None:
    """A ConfigError when run_dir's disk has too little room for Hydra's files, which it writes with a traceback."""
    existing = next(folder for folder in (run_dir, *run_dir.parents) if folder.exists())
    stats = os.statvfs(existing)
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"hydra.run.dir = {run_dir}: its disk has {free // 1024} KB free, too little to start a run "
            f"({MIN_FREE_BYTES // 1024} KB at least); free space there, or give a hydra.run.dir on another disk"
        )


def forget_unstarted(run_dir: Path) -> None:
    """Remove a single run's run dir that holds only what Hydra wrote before the job (.hydra/, the log, the lock):
    a run refused for bad input before it wrote anything leaves no run dir behind."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN or not run_dir.is_dir():
        return  # a sweep's job dir keeps its record of the failure
    names = {path.name for path in run_dir.iterdir()}
    if HYDRA_OUTPUT in names and names <= {HYDRA_OUTPUT, HYDRA_LOG, LOCK_FILE}:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # outputs/<name>/, made for this run, when it holds no other
            run_dir.parent.rmdir()


def _holder(descriptor: int) -> str:
    """The PID in a lock file another process holds ("PID unknown" if it wrote none in time)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        pid = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        if pid or time.monotonic() > deadline:
            return pid or "(PID unknown)"
        time.sleep(0.01)


def _unwritable(run_dir: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"hydra.run.dir = {run_dir}: cannot be created or written ({error.strerror}: {error.filename or run_dir}); "
        "free space there, or give a hydra.run.dir on a writable disk"
    )


def _run_dir(config: DictConfig) -> str:
    """hydra.run.dir, resolved: `~name` deletes a key it reads."""
    try:
        return OmegaConf.select(config, "hydra.run.dir")
    except InterpolationKeyError as error:
        raise ConfigError(
            f"hydra.run.dir: {first_line(error)}; set that key (name=<folder>) instead of deleting it"
        ) from None

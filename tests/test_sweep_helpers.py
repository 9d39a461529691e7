"""Shared by the sweep tests: tiny settings, reading a sweep dir, and callbacks a test adds to the jobs of a real
`dlrun -m` (+callbacks.NAME._target_=test_sweep_helpers.CLASS, with HELPERS_ENV) to interrupt or break one on purpose.
"""

import csv
import json
import os
import signal
from pathlib import Path

from dlrun.callbacks.base import Callback

# One epoch of two batches on the CPU, nothing printed but the sweep's own lines and table.
TINY = ["trainer.max_epochs=1", "trainer.limit_batches=2", "trainer.device=cpu", "quiet=true", "print_config=false"]
# The jobs import this module, and the dlrun that PYTHONPATH already names, if any.
HELPERS_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}


def only_sweep_dir(cwd: Path) -> Path:
    sweeps = list((cwd / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def finished_sweep(cwd: Path, *overrides: str):
    """A real `dlrun -m OVERRIDES` with the TINY settings, run in cwd, that must succeed: its result and sweep dir."""
    from conftest import run_cli

    result = run_cli("-m", *overrides, *TINY, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result, only_sweep_dir(cwd)


def job_record(job_dir: Path) -> dict:
    return json.loads((job_dir / "job.json").read_text())


def summary_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def barrier(folder) -> list[str]:
    """Overrides that make each job wait in its training start until two jobs train at once (else it fails)."""
    return [
        "+callbacks.together._target_=test_sweep_helpers.WaitForEachOther",
        f"+callbacks.together.folder={folder}",
        "+callbacks.together.count=2",
    ]


def overlap(records: list[dict]) -> float:
    """Seconds during which both jobs ran, from their job.json start times and durations."""
    starts = [record["started"] for record in records]
    ends = [record["started"] + record["duration_s"] for record in records]
    return min(ends) - max(starts)


def one_line(text: str) -> str:
    """Rich's wrapping undone, to search the terminal output for a sentence."""
    return " ".join(text.split())


class InterruptOnce(Callback):
    """Ctrl-C (SIGINT to this process) in the first training batch of job number `job`, once (the marker file
    remembers): the trainer finishes that step, saves a mid-epoch last.pt and the run exits 130."""

    def __init__(self, *, job: int, marker: str):
        self.job, self.marker = job, Path(marker)

    def on_train_batch_end(self, trainer) -> None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.get().job.num == self.job and not self.marker.exists():
            self.marker.write_text("interrupted once\n")
            os.kill(os.getpid(), signal.SIGINT)


def broken_model(**options):
    """A model builder with a bug: model._target_=test_sweep_helpers.broken_model."""
    raise RuntimeError("a bug in this job's model, on purpose")


class WorkLeftAtExit(Callback):
    """Leaves work for the end of the process, as libraries do: a thread still writing and an atexit handler."""

    def __init__(self, *, directory: str):
        self.directory = Path(directory)

    def on_fit_end(self, trainer) -> None:
        import atexit
        import threading
        import time

        def write_late() -> None:
            time.sleep(0.5)
            (self.directory / "thread.txt").write_text("written by a thread after training\n")

        threading.Thread(target=write_late).start()
        atexit.register((self.directory / "atexit.txt").write_text, "written at exit\n")


class WaitForEachOther(Callback):
    """A barrier: each job writes its PID under `folder` as its training starts, then waits (at most timeout_s) until
    `count` jobs have: it passes only when that many jobs train at once, and fails the job otherwise."""

    def __init__(self, *, folder: str, count: int, timeout_s: float = 60.0):
        self.folder, self.count, self.timeout_s = Path(folder), count, timeout_s

    def on_fit_start(self, trainer) -> None:
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / str(os.getpid())).write_text(f"{time.time()}\n")
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.folder.iterdir())) < self.count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.count} jobs did not train at once within {self.timeout_s} s")
            time.sleep(0.02)

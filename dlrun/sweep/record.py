"""job.json: what one job of a sweep is, and how it went. Written at its start and end, read by the summary."""

import json
import os
import socket
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dlrun import atomic

RECORD_FILE = "job.json"
METRICS_FILE = "metrics.json"  # written by dlrun.run at the end of a job that finished
STOP_FILE = ".stop"  # in the sweep dir: a job failed and the sweep stops at the first failure

RUNNING, COMPLETED, PRUNED, FAILED, NOT_RUN, INTERRUPTED = (
    "running",
    "completed",
    "pruned",
    "failed",
    "not run",
    "interrupted",
)
FINISHED = (COMPLETED, PRUNED)  # with metrics.json: a resumed sweep skips these


@dataclass
class JobRecord:
    num: int | None  # hydra.job.num: the job's subdir in the sweep dir, the trial number in an Optuna search
    overrides: list[str]  # the job's command-line overrides, as Hydra passed them
    status: str = RUNNING  # running | completed | pruned | failed | not run | interrupted
    monitor: str = "val/loss"  # callbacks.checkpoint.monitor of the job
    mode: str = "min"  # callbacks.checkpoint.mode: min | max
    dataset: str | None = None  # dataset.name: the best job is chosen among jobs on one dataset
    value: float | None = None  # the monitored metric the job returned
    error: str | None = None  # a failed job's error: its type and message
    traceback: str | None = None  # a failed job's traceback, when the error was a bug rather than bad input
    exit_code: int | None = None  # a failed job's, as a single run would exit: 2 bad input, 1 a bug
    note: str | None = None  # pruned at epoch N, resumed from epoch N, ...
    started: float | None = None  # time.time() at the start of this attempt
    duration_s: float = 0.0  # seconds of work over all attempts (a resumed job adds its new attempt)
    attempts: int = 0  # times the job started training: 2 after one resume
    torch_threads: int | None = None  # torch.set_num_threads of a job sharing the cores with parallel jobs
    device: str | None = None  # trainer.device the job ran on
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def load(cls, job_dir: str | Path) -> "JobRecord | None":
        path = Path(job_dir) / RECORD_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def save(self, job_dir: str | Path) -> None:
        write_json(Path(job_dir) / RECORD_FILE, asdict(self))

    def live_status(self) -> str:
        """The status, with a `running` job whose process is gone on this host shown as interrupted."""
        if self.status == RUNNING and self.host == socket.gethostname() and not process_alive(self.pid):
            return INTERRUPTED
        return self.status


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_metrics(job_dir: str | Path) -> dict[str, float] | None:
    """The network's val/* and test/* metrics; the baselines' beside them (under "baselines") are left out."""
    try:
        metrics = json.loads((Path(job_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return {name: value for name, value in metrics.items() if name != "baselines"}


def write_json(path: Path, data) -> None:
    """Atomically (dlrun.atomic): a reader (dlrun-summary on a running sweep) never sees half a file."""
    atomic.write(path, json.dumps(data, indent=2, default=str) + "\n")

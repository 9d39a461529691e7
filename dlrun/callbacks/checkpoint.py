"""checkpoints/last.pt after every epoch, checkpoints/best.pt when the monitored metric improves.

The state is serialised at the end of the epoch and written (fsync, rename) on a background thread while the next
epoch trains; training ends, or a signal stops it, only once the files are on disk.
"""

from pathlib import Path

from dlrun.callbacks.base import Callback, is_improvement
from dlrun.checkpoint import BackgroundWriter, save, serialize


class Checkpoint(Callback):
    def __init__(self, *, run_dir: str | Path, config: dict, monitor: str = "val/loss", mode: str = "min"):
        self.directory = Path(run_dir) / "checkpoints"
        self.config = config  # the resolved run config, stored in every checkpoint
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.writer = BackgroundWriter()

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def on_epoch_end(self, trainer) -> None:
        value = trainer.state.metrics.get(self.monitor)
        improved = value is not None and is_improvement(value, self.best, self.mode)
        if improved:
            self.best = value
        contents = serialize(trainer.state_dict() | {"config": self.config})
        self.writer.write(contents, self.last_path, *([self.best_path] if improved else []))

    def on_interrupt(self, trainer) -> None:
        self.writer.wait()
        save(trainer.state_dict() | {"config": self.config}, self.last_path)  # resumes at the very next batch

    def on_fit_end(self, trainer) -> None:
        self.writer.wait()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")

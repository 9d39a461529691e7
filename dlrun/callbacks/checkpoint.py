"""checkpoints/last.pt after every epoch, checkpoints/best.pt when the monitored metric improves."""

from pathlib import Path

from dlrun.callbacks.base import Callback, is_improvement
from dlrun.checkpoint import copy, save


class Checkpoint(Callback):
    def __init__(self, *, run_dir: str | Path, config: dict, monitor: str = "val/loss", mode: str = "min"):
        self.directory = Path(run_dir) / "checkpoints"
        self.config = config  # the resolved run config, stored in every checkpoint
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None

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
        state = trainer.state_dict() | {"config": self.config}
        save(state, self.last_path)
        if improved:
            copy(self.last_path, self.best_path)

    def on_interrupt(self, trainer) -> None:
        save(trainer.state_dict() | {"config": self.config}, self.last_path)  # resumes at the very next batch

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")

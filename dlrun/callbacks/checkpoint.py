"""checkpoints/last.pt after every epoch, checkpoints/best.pt when the monitored metric improves (with the weights
validation scored: trainer.evaluation_model's when a callback set one, an average of the weights, say).

The state is serialised at the end of the epoch and written (fsync, rename) on a background thread while the next
epoch trains; training ends, or a signal stops it, only once the files are on disk. Epochs shorter than
save_interval_s are saved together: last.pt gets the newest state once the interval has passed, training ends or a
signal stops it, and an improving epoch's state is kept as an in-memory copy meanwhile. A run that diverges or
fails mid-epoch writes its newest copy: last.pt is at most save_interval_s of training old. With
mid_epoch_interval_s, last.pt is also written after an optimizer step once that long has passed since the last save:
a run killed mid-epoch (SIGKILL, a lost node) resumes at the next batch instead of the epoch's first. With
save_top_k, the k best epochs by the monitor are also kept, as epoch=E-<monitor>=V.pt; a file pushed out of the k is
deleted once the write after it has begun (the files written before are then on disk).
"""

import math
import re
import time
from pathlib import Path

from dlrun.callbacks.base import Callback, is_improvement
from dlrun.checkpoint import BackgroundWriter, serialize, snapshot
from dlrun.errors import ConfigError


class Checkpoint(Callback):
    def __init__(
        self,
        *,
        run_dir: str | Path,
        config: dict,
        monitor: str = "val/loss",
        mode: str = "min",
        save_interval_s: float = 0.0,
        mid_epoch_interval_s: float | None = None,
        save_top_k: int | None = None,
    ):
        if not save_interval_s >= 0:
            raise ConfigError(
                f"callbacks.checkpoint.save_interval_s = {save_interval_s}: must be >= 0 seconds (0: every epoch); "
                "type callbacks.checkpoint.save_interval_s=1.0"
            )
        if mid_epoch_interval_s is not None and not mid_epoch_interval_s > 0:
            raise ConfigError(
                f"callbacks.checkpoint.mid_epoch_interval_s = {mid_epoch_interval_s}: must be > 0 seconds, or null "
                "(epoch ends only); type callbacks.checkpoint.mid_epoch_interval_s=600"
            )
        if save_top_k is not None and not (isinstance(save_top_k, int) and save_top_k >= 0):
            raise ConfigError(
                f"callbacks.checkpoint.save_top_k = {save_top_k}: must be a whole number >= 0, or null (off); "
                "type callbacks.checkpoint.save_top_k=3"
            )
        self.directory = Path(run_dir) / "checkpoints"
        self.config = config  # the resolved run config, stored in every checkpoint
        self.monitor, self.mode = monitor, mode
        self.save_interval_s = save_interval_s
        self.mid_epoch_interval_s = mid_epoch_interval_s
        self.best: float | None = None
        self.save_top_k = save_top_k or 0
        self.top_k: list[tuple[float, str]] = []  # (value, file name) of the k best epochs, best first
        self.dropped: list[Path] = []  # files pushed out of the top k, deleted at the next save
        self.writer = BackgroundWriter()
        self.unsaved: dict[Path, dict] = {}  # a state each file is still to get
        self.owed_live = False  # last.pt is owed the trainer's state as the epoch left it (no copy kept)
        self.saved_at = -math.inf  # time.monotonic() of the last save

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        improved = value is not None and is_improvement(value, self.best, self.mode)
        if improved:
            self.best = value
        scored = [self.best_path] if improved else []  # the files that get this epoch's scored state
        scored += self._ranked(value, trainer.state.epoch)
        due = time.monotonic() - self.saved_at >= self.save_interval_s
        if not (due or scored):
            self.owed_live = True  # read when saved, if that is before the next epoch starts
            return
        state = trainer.state_dict()
        kept = self._with_config(state if due else snapshot(state))  # a copy when kept: training goes on
        self.unsaved[self.last_path] = kept
        if scored:
            self.unsaved |= dict.fromkeys(scored, self._as_scored(kept, trainer, copy=not due))
        self.owed_live = False
        if due:
            self._save_unsaved(trainer)

    @staticmethod
    def _as_scored(kept: dict, trainer, copy: bool) -> dict:
        """best.pt's and the top k's state: with the weights validation scored (callbacks.ema's average, when on)."""
        if trainer.evaluation_model is None:
            return kept
        weights = trainer.evaluation_model.state_dict()
        return kept | {"model": snapshot(weights) if copy else weights}

    def _ranked(self, value: float | None, epoch: int) -> list[Path]:
        """With save_top_k: this epoch's file when its value is among the k best so far (then a file pushed out is
        dropped); ties keep the earlier epoch."""
        if not self.save_top_k or value is None or value != value:  # off, not a validation epoch, or NaN
            return []
        name = f"epoch={epoch}-{re.sub(r'[^A-Za-z0-9_.-]', '_', self.monitor)}={value:.4f}.pt"
        self.top_k = sorted([*self.top_k, (value, name)], key=lambda entry: entry[0], reverse=self.mode == "max")
        for _, pushed_out in self.top_k[self.save_top_k :]:
            path = self.directory / pushed_out
            if self.unsaved.pop(path, None) is None:  # never written: nothing to delete
                self.dropped.append(path)
        self.top_k = self.top_k[: self.save_top_k]
        return [self.directory / name] if (value, name) in self.top_k else []

    def on_fit_start(self, trainer) -> None:
        for stale in self.directory.glob(".*.tmp"):  # a write that a killed process left unfinished
            stale.unlink()

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        self.owed_live = False  # the state changes from the first batch on (weights, batch-norm statistics, RNG)

    def on_train_step_end(self, trainer) -> None:
        if self.mid_epoch_interval_s is None or time.monotonic() - self.saved_at < self.mid_epoch_interval_s:
            return
        self.unsaved[self.last_path] = self._with_config(trainer.state_dict())  # serialised now, written behind
        self._save_unsaved(trainer)

    def on_interrupt(self, trainer) -> None:
        self.unsaved[self.last_path] = self._with_config(trainer.state_dict())  # resumes at the very next batch
        self._save_unsaved(trainer)
        self.writer.wait()

    def on_fit_end(self, trainer) -> None:
        self._save_unsaved(trainer)  # after a divergence too: the newest good state held
        self.writer.wait()

    def _save_unsaved(self, trainer) -> None:
        if self.owed_live:  # training has not gone on since that epoch's end: its state is the trainer's
            self.unsaved[self.last_path] = self._with_config(trainer.state_dict())
        self.owed_live = False
        serialized: dict[int, bytes] = {}  # a state shared by last.pt and best.pt is serialised once
        files = {}
        for path, state in self.unsaved.items():
            if id(state) not in serialized:
                serialized[id(state)] = serialize(state)
            files[path] = serialized[id(state)]
        if files:
            self.writer.write(files)  # once the write before it is done: a dropped file is on disk by now
        else:
            self.writer.wait()
        for path in self.dropped:
            path.unlink(missing_ok=True)  # resumed in another run dir: the top k files there are left as they are
        self.unsaved, self.dropped = {}, []
        self.saved_at = time.monotonic()

    def _with_config(self, state: dict) -> dict:
        return state | {"config": self.config}  # the run's config travels with every checkpoint, never copied

    def state_dict(self) -> dict:
        return {"best": self.best, "top_k": [list(entry) for entry in self.top_k]}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")
        self.top_k = [tuple(entry) for entry in state.get("top_k", [])]

"""Stop training when the monitored metric has not improved for `patience` validations, or once it reaches
`stop_at` (a score that cannot be beaten: CartPole's return of 500)."""

from dlrun.callbacks.base import Callback, is_improvement


class EarlyStopping(Callback):
    on_every_rank = True  # every rank must stop at the same epoch

    def __init__(
        self,
        *,
        monitor: str = "val/loss",
        mode: str = "min",
        patience: int = 10,
        min_delta: float = 0.0,
        stop_at: float | None = None,
    ):
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = patience, min_delta
        self.stop_at = stop_at
        self.best: float | None = None
        self.wait = 0  # validations since the last improvement

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:  # not a validation epoch
            return
        value = metrics[self.monitor]
        if self.stop_at is not None and (value >= self.stop_at if self.mode == "max" else value <= self.stop_at):
            trainer.state.should_stop = True
        if is_improvement(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.state.should_stop = True

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait = state.get("best"), state.get("wait", 0)

"""The events the trainer emits. A callback overrides the ones it needs; the rest do nothing."""


class Callback:
    on_every_rank = False  # under torchrun: whether ranks other than 0 run this callback too

    def on_fit_start(self, trainer) -> None:
        """Before the first epoch (after a resume has restored the state)."""

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        """Before the training batches of an epoch."""

    def on_train_batch_end(self, trainer) -> None:
        """After each training batch."""

    def on_train_step_end(self, trainer) -> None:
        """After each optimizer step (each training step of a task that steps itself): a state a resume starts from."""

    def on_log(self, trainer, metrics: dict[str, float]) -> None:
        """Every trainer.log_every_n_steps optimizer steps: {"train/loss": ...}."""

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        """After each epoch's training and validation, once trainer.state.epoch counts it: its metrics, train/*,
        val/* (on validation epochs) and train/lr. Callbacks run in the order given: one that saves the state
        (checkpoint) comes after those whose state it saves."""

    def on_evaluation_end(self, trainer, split: str, outputs, targets) -> None:
        """After the evaluation of a split (val each validation epoch and again at test time, test at the end): the
        task's outputs and targets of every sample evaluated, gathered from all ranks, before its metrics."""

    def on_interrupt(self, trainer) -> None:
        """SIGINT or SIGTERM stopped training mid-epoch, after a whole optimizer step."""

    def on_fit_end(self, trainer) -> None:
        """After training, also when it ended with an exception."""

    def on_test_end(self, trainer, metrics: dict[str, float]) -> None:
        """After the final evaluation of the best weights: val/* and test/* metrics."""

    def state_dict(self) -> dict:
        """What a resumed run needs to continue as if never stopped."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def is_improvement(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether value beats best by more than min_delta, in the direction mode (min | max); NaN never does."""
    if value != value:  # NaN
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta

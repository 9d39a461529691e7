"""TensorBoard event files in <run dir>/tensorboard: scalars by optimizer step, and the HParams view."""

from pathlib import Path

from dlrun.callbacks.base import Callback


class TensorBoard(Callback):
    def __init__(self, *, run_dir: str | Path, config: dict):
        self.log_dir = Path(run_dir) / "tensorboard"
        self.hparams = flatten_hparams(config)
        self.writer = None  # opened when training starts, on the one process that logs

    def on_fit_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir))

    def on_log(self, trainer, metrics: dict[str, float]) -> None:
        self._scalars(metrics, trainer.state.step)

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        self._scalars(metrics | {"epoch": trainer.state.epoch}, trainer.state.step)

    def on_fit_end(self, trainer) -> None:
        self.writer.flush()

    def on_test_end(self, trainer, metrics: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams

        test_metrics = {name: value for name, value in metrics.items() if name.startswith("test/")}
        self._scalars(test_metrics, trainer.state.step)
        # The HParams view pairs these hyperparameters with the final test/* scalars above.
        for summary in hparams(self.hparams, test_metrics):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()

    def _scalars(self, metrics: dict[str, float], step: int) -> None:
        """All of a step's scalars as one event: one record to encode and checksum rather than one per metric."""
        from tensorboard.compat.proto.summary_pb2 import Summary  # loaded with SummaryWriter, after start-up

        values = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in metrics.items()]
        self.writer.file_writer.add_summary(Summary(value=values), step)


def tensorboard_writer(trainer):
    """The SummaryWriter of the run's TensorBoard callback, when it has one open: for callbacks that log more."""
    for callback in trainer.callbacks:
        if isinstance(callback, TensorBoard) and callback.writer is not None:
            return callback.writer
    return None


def flatten_hparams(config: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    """{"optimizer.lr": 0.001, "model.hidden": "[256, 128]", ...}: TensorBoard takes only scalars and strings."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten_hparams(value, f"{name}.")
        elif isinstance(value, int | float | str | bool):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat

"""The terminal view of training: a progress bar per epoch with the live loss, then a line of metrics."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from dlrun.callbacks.base import Callback


class Progress(Callback):
    def __init__(self, *, quiet: bool = False):
        self.console = Console(quiet=quiet)
        self.bar: Bar | None = None
        self.bar_task = None

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        self.bar = Bar(
            TextColumn(f"epoch {trainer.state.epoch + 1}/{trainer.max_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.bar_task = self.bar.add_task("train", total=num_batches, loss="…")

    def on_train_batch_end(self, trainer) -> None:
        self.bar.advance(self.bar_task)

    def on_log(self, trainer, metrics: dict[str, float]) -> None:
        self.bar.update(self.bar_task, loss=f"{metrics['train/loss']:.4f}")

    def on_epoch_metrics(self, trainer, metrics: dict[str, float]) -> None:
        self._stop()
        shown = "  ".join(f"{name} [bold]{value:.4g}[/]" for name, value in metrics.items())
        self.console.print(f"epoch {trainer.state.epoch + 1}/{trainer.max_epochs}  {shown}")

    def on_fit_end(self, trainer) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

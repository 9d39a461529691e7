"""The terminal view of training: a progress bar per epoch with the live loss, then a line of metrics."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from dlrun.callbacks.base import Callback


class Progress(Callback):
    def __init__(self, *, quiet: bool = False):
        self.console = Console(quiet=quiet)
        self.bar: Bar | None = None  # one live display for the whole fit, one bar in it per epoch
        self.epoch_bar = None

    def on_fit_start(self, trainer) -> None:
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),  # empty until a loss is logged (a GAN's steps report none)
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        description = f"epoch {trainer.state.epoch + 1}/{trainer.max_epochs}"
        self.epoch_bar = self.bar.add_task(description, total=num_batches, loss="")

    def on_train_batch_end(self, trainer) -> None:
        self.bar.advance(self.epoch_bar)

    def on_log(self, trainer, metrics: dict[str, float]) -> None:
        self.bar.update(self.epoch_bar, loss=f"loss {metrics['train/loss']:.4f}")

    def on_epoch_metrics(self, trainer, metrics: dict[str, float]) -> None:
        self.bar.remove_task(self.epoch_bar)
        shown = "  ".join(f"{name} [bold]{value:.4g}[/]" for name, value in metrics.items())
        self.bar.console.print(f"epoch {trainer.state.epoch + 1}/{trainer.max_epochs}  {shown}")

    def on_fit_end(self, trainer) -> None:
        self.bar.stop()

"""The terminal view of training: a progress bar per epoch with the live loss, then a line of metrics.

The bar is drawn between batches on the training thread, at most `refresh_per_second` times a second: no refresh
thread competes with training for the interpreter. It appears once an epoch has run `delay` seconds; a shorter epoch
would only flicker it, and prints its line of metrics alone.
"""

import math
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.progress import Progress as Bar
from rich.text import Text

from dlrun.callbacks.base import Callback
from dlrun.errors import ConfigError


class Progress(Callback):
    def __init__(self, *, quiet: bool = False, delay: float = 0.5, refresh_per_second: float = 4.0):
        if not delay >= 0:
            raise ConfigError(
                f"callbacks.progress.delay = {delay}: must be >= 0 seconds; type callbacks.progress.delay=0.5"
            )
        if not refresh_per_second > 0:
            raise ConfigError(
                f"callbacks.progress.refresh_per_second = {refresh_per_second}: must be > 0; "
                "type callbacks.progress.refresh_per_second=4"
            )
        self.console = Console(quiet=quiet)
        self.delay = delay
        self.redraw_interval = 1 / refresh_per_second
        self.bar: Bar | None = None  # one live display for the whole fit, one bar in it per epoch once shown
        self.epoch_bar: TaskID | None = None
        self.description, self.loss = "", ""
        self.done = self.total = 0  # the epoch's batches: done so far, in all
        self.epoch_started, self.drawn_at = 0.0, -math.inf  # time.monotonic() values

    def on_fit_start(self, trainer) -> None:
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),  # empty until a loss is logged (a GAN's steps report none)
            TextColumn("{task.fields[elapsed]}"),
            console=self.console,
            transient=True,
            auto_refresh=False,
        )
        self.epoch_bar, self.drawn_at = None, -math.inf

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        self.description = f"epoch {trainer.state.epoch + 1}/{trainer.max_epochs}"
        self.done, self.total, self.loss = trainer.state.batch, num_batches, ""  # a resumed epoch starts part done
        self.epoch_started = time.monotonic()

    def on_train_batch_end(self, trainer) -> None:
        if self.console.quiet:
            return
        self.done += 1
        now = time.monotonic()
        if now - self.drawn_at >= self.redraw_interval and now - self.epoch_started >= self.delay:
            self._draw(now)

    def on_log(self, trainer, metrics: dict[str, float]) -> None:
        self.loss = f"loss {metrics['train/loss']:.4f}"

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        if self.epoch_bar is not None:
            self.bar.remove_task(self.epoch_bar)
            self.epoch_bar = None
        line = Text(f"epoch {trainer.state.epoch}/{trainer.max_epochs}")
        for name, value in metrics.items():
            line.append(f"  {name} ").append(f"{value:.4g}", style="bold")
        self.console.print(line, highlight=False, soft_wrap=True)  # Text: no markup to parse, no highlighter to run

    def on_fit_end(self, trainer) -> None:
        self.bar.stop()

    def _draw(self, now: float) -> None:
        fields = {"loss": self.loss, "elapsed": str(timedelta(seconds=int(now - self.epoch_started)))}
        if self.epoch_bar is None:
            self.bar.start()  # a no-op once the display is live
            self.epoch_bar = self.bar.add_task(self.description, total=self.total, completed=self.done, **fields)
        else:
            self.bar.update(self.epoch_bar, completed=self.done, refresh=True, **fields)
        self.drawn_at = now

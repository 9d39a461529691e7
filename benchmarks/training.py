"""Section 1: the wall time of dlrun's trainer.fit against plain PyTorch loops doing the same work, and its tables."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from plain_loops import Measured, Stopwatch, run_plain_loader, run_plain_tensors
from report import CLOCKS, Report, ratio

from dlrun import build
from dlrun.config import CONFIG_DIR
from dlrun.data.module import DataModule
from dlrun.run import seed_everything
from dlrun.trainer import Trainer

MODELS = ("mlp", "cnn")

# The variants timed; ratios are taken against the plain loops and the bare Trainer.
DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS = "dlrun", "dlrun_bare", "loader", "tensors"
PLAIN_METRICS = "tensors_metrics"  # the lower bound plus the training metrics dlrun reports
ONLY_CHECKPOINT, ONLY_TENSORBOARD, ONLY_PROGRESS = "only_checkpoint", "only_tensorboard", "only_progress"
VARIANTS = (DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS, PLAIN_METRICS)  # timed in every run
CALLBACKS = ("early_stopping", "checkpoint", "tensorboard", "progress")
# --breakdown's variants, each with the one callback it keeps.
BREAKDOWN = {ONLY_CHECKPOINT: "checkpoint", ONLY_TENSORBOARD: "tensorboard", ONLY_PROGRESS: "progress"}


def compose_config(*overrides: str) -> DictConfig:
    """The config `dlrun <overrides>` would run, composed from the real conf/ with Hydra's compose API."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def bench_config(model: str, epochs: int, keep: str | None = None) -> DictConfig:
    """The default run of `model` on CPU for `epochs` epochs; `keep` names the one callback left on, if any.

    Early stopping is kept but given patience beyond the run, so that every variant trains every epoch.
    quiet=false as in a normal run: the progress bars render (into a sink, see `terminal_sink`).
    """
    overrides = [
        f"model={model}",
        "trainer.device=cpu",
        f"trainer.max_epochs={epochs}",
        f"callbacks.early_stopping.patience={epochs + 1}",
        "quiet=false",
        "print_config=false",
        "name=bench",  # the default name needs a Hydra run (${hydra:runtime.choices...})
    ]
    if keep is not None:
        overrides += [f"callbacks.{name}=null" for name in CALLBACKS if name != keep]
    return compose_config(*overrides)


class _Sink(io.TextIOBase):
    """A text stream that takes everything and keeps nothing."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


@contextlib.contextmanager
def terminal_sink():
    """stdout goes nowhere, but rich consoles made inside believe it is a terminal (TTY_COMPATIBLE=1).

    So the progress callback renders its live bars with cursor controls as in a terminal; only the
    terminal's own drawing is left out. Rich reads the environment when a Console is made.
    """
    before = os.environ.get("TTY_COMPATIBLE")
    os.environ["TTY_COMPATIBLE"] = "1"
    try:
        with contextlib.redirect_stdout(_Sink()):
            yield
    finally:
        if before is None:
            del os.environ["TTY_COMPATIBLE"]
        else:
            os.environ["TTY_COMPATIBLE"] = before


def run_dlrun(cfg: DictConfig, data: DataModule, *, callbacks: bool) -> Measured:
    """dlrun's own path (dlrun/run.py): seed, build model, task, optimizer, trainer, schedulers; time fit()."""
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-") as run_dir, terminal_sink():
        seed_everything(cfg.seed)
        model = build.model(cfg, data.spec)
        task = build.task(cfg, model, data)
        optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
        if callbacks:
            trainer = build.trainer(cfg, Path(run_dir))
        else:
            trainer = Trainer(**OmegaConf.to_container(cfg.trainer), callbacks=[])
        schedulers = build.schedulers(cfg, optimizers, trainer.optimizer_steps_per_epoch(data))
        with Stopwatch() as clock:
            state = trainer.fit(task, data, optimizers, schedulers)
        if callbacks:
            trainer.test(task, data)  # untimed: ends the run as dlrun does (closes the TensorBoard writer)
    return Measured(clock.wall, clock.cpu, state.metrics["val/loss"], state.epoch)


@dataclass
class TrainRow:
    model: str
    variant: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def cpu_median(self) -> float:
        return statistics.median(run.cpu_seconds for run in self.runs)

    @property
    def best(self) -> float:
        return min(run.seconds for run in self.runs)


def measure(variant: str, cfg: DictConfig, data: DataModule) -> Measured:
    """One timed training run of `variant` with the config `cfg` on `data`."""
    if variant == PLAIN_LOADER:
        return run_plain_loader(cfg, data)
    if variant == PLAIN_TENSORS:
        return run_plain_tensors(cfg, data)
    if variant == PLAIN_METRICS:
        return run_plain_tensors(cfg, data, training_metrics=True)
    return run_dlrun(cfg, data, callbacks=variant != DLRUN_BARE)


def bench_training(
    models: tuple[str, ...], epochs: int, rounds: int, breakdown: bool, say: Callable[[str], None]
) -> dict[str, dict[str, TrainRow]]:
    """Every variant of each model, warmed up once, then `rounds` interleaved rounds: {model: {variant: row}}."""
    variants = [*VARIANTS, *(BREAKDOWN if breakdown else ())]
    results: dict[str, dict[str, TrainRow]] = {}
    for model in models:
        configs = {variant: bench_config(model, epochs, BREAKDOWN.get(variant)) for variant in variants}
        data = build.data(configs[DLRUN_FULL])  # the real dlrun split, built once; `to(cpu)` keeps it as is
        for variant in variants:  # warm-up, untimed: first-call costs (allocator, kernels, lazy imports)
            measure(variant, bench_config(model, 1, BREAKDOWN.get(variant)), data)
        rows = {variant: TrainRow(model, variant) for variant in variants}
        for round_ in range(rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]  # alternate to spread drift evenly
            for variant in order:
                measured = measure(variant, configs[variant], data)
                if measured.epochs != epochs:
                    raise RuntimeError(f"{model} {variant}: trained {measured.epochs} epochs, not {epochs}")
                rows[variant].runs.append(measured)
            say(
                f"{model} round {round_ + 1}/{rounds}: "
                + "  ".join(
                    f"{variant} {rows[variant].runs[-1].seconds:.2f}s (CPU {rows[variant].runs[-1].cpu_seconds:.2f})"
                    for variant in variants
                )
            )
        results[model] = rows
    return results


# How the tables name each variant; benchmarks/README.md says what each runs.
VARIANT_LABELS = {
    DLRUN_FULL: "dlrun, callbacks of a normal run",
    DLRUN_BARE: "dlrun, callbacks=[]",
    ONLY_CHECKPOINT: "dlrun, checkpoint callback only",
    ONLY_TENSORBOARD: "dlrun, tensorboard callback only",
    ONLY_PROGRESS: "dlrun, progress callback only",
    PLAIN_LOADER: "plain loop, DataLoader",
    PLAIN_TENSORS: "plain loop, tensors (lower bound)",
    PLAIN_METRICS: "plain loop, tensors, + training loss and accuracy as dlrun sums them",
}


BUSY = 0.85  # CPU/wall below this (one compute thread): other work took the CPU, wall times are unreliable


def training_reports(results: dict[str, dict[str, TrainRow]], epochs: int, rounds: int) -> list[Report]:
    summary = []
    for model, variants in results.items():
        for clock, pick in CLOCKS:
            full, bare, loader, low, same = (
                pick(variants[key]) for key in (DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS, PLAIN_METRICS)
            )
            share = f"{(full - bare) / full * 100:.0f}%"
            summary.append(
                [
                    model,
                    clock,
                    ratio(full, low),
                    ratio(full, loader),
                    ratio(bare, low),
                    ratio(bare, same),
                    ratio(bare, loader),
                    share,
                ]
            )
    detail = []
    for model, variants in results.items():
        bare, loader, low = (variants[key].median for key in (DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS))
        for key, row in variants.items():
            detail.append(
                [
                    model,
                    VARIANT_LABELS[key],
                    f"{row.median:.3f}",
                    f"{row.median / epochs * 1000:.1f}",
                    ratio(row.median, low),
                    ratio(row.median, loader),
                    ratio(row.median, bare) if key.startswith(("dlrun", "only")) else "",
                    f"{row.cpu_median / row.median:.2f}",
                    f"{statistics.median(run.val_loss for run in row.runs):.4f}",
                ]
            )
    setting = f"fit(), digits, CPU, {epochs} epochs, batch 64, validation every epoch; medians of {rounds} rounds"
    busiest = min(row.cpu_median / row.median for variants in results.values() for row in variants.values())
    verdict = (
        f" In this run CPU/wall fell to {busiest:.2f}: the machine was busy, so the wall rows are noisy; "
        "read the CPU rows."
        if busiest < BUSY
        else ""
    )
    return [
        Report(
            f"Training: ratios ({setting})",
            [
                "model",
                "clock",
                "dlrun / lower bound",
                "dlrun / DataLoader",
                "bare / lower bound",
                "bare / lower bound + metrics",
                "bare / DataLoader",
                "callbacks' share",
            ],
            summary,
            "dlrun = Trainer with the callbacks of a normal run; bare = Trainer(callbacks=[]); lower bound = plain "
            "loop over tensors[randperm]; + metrics = the same loop also keeping each step's loss and output on "
            "the device, summing the losses and counting the correct predictions every log interval, and reading "
            "them once an epoch, as dlrun does for train/loss_epoch and train/acc. Ratios "
            "of the medians of wall times (the headline), of the medians of "
            "the process's CPU times (steadier when the machine is busy, see CPU/wall below), and of the best wall "
            "times (the least disturbed run of each)." + verdict,
        ),
        Report(
            "Training: each variant (wall time)",
            [
                "model",
                "variant",
                "median s",
                "ms/epoch",
                "/ lower bound",
                "/ DataLoader",
                "/ bare",
                "CPU/wall",
                "val loss",
            ],
            detail,
            "CPU/wall: the process's CPU time over wall time; with one compute thread about 1.0 on an idle machine, "
            "lower when other work took the CPU. val loss after the last epoch: dlrun and the lower bound use the "
            "same seeds and batch order, so the same value there means the same arithmetic.",
        ),
    ]

"""`dlrun-lr-find [overrides]`: the learning-rate range test, a loss curve and a suggested optimizer.lr.

The run the overrides describe trains with the real task and trainer while an exponential schedule (torch's
ExponentialLR, stepped every optimizer step) raises the learning rate from --start-lr to --end-lr over --num-steps
steps; it stops early once the smoothed loss exceeds --diverge times its lowest value (or turns NaN). The suggested
lr is where the smoothed loss falls fastest against log(lr) (the steepest descent, as fastai's and Lightning's
finders suggest). The run dir, outputs/lr_find/<name>/<date>_<time>_<us>/ (hydra.run.dir=DIR for another), gets
lr_find.png, lr_find.csv, lr_find.json and tensorboard/ (lr_find/loss, lr_find/smoothed_loss, lr_find/lr by step,
and the image lr_find/curve). Nothing is checkpointed and the model is not kept.
"""

import argparse
import contextlib
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from dlrun import compose
from dlrun.callbacks.base import Callback
from dlrun.errors import ConfigError, exit_on_bad_input

DEFAULT_START_LR = 1e-7
DEFAULT_END_LR = 10.0
DEFAULT_NUM_STEPS = 200
DEFAULT_DIVERGE = 4.0
SMOOTHING = 0.98  # weight of the past in the loss's exponential moving average (bias-corrected)
SKIP_START, SKIP_END = 5, 3  # points left out of the steepest-descent search at the ends (noisy, diverging)
MIN_POINTS = SKIP_START + SKIP_END + 2


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="dlrun-lr-find",
        description=(
            "Learning-rate range test: train the run the overrides describe while the learning rate grows\n"
            "exponentially, stop when the loss diverges, and suggest the lr where the smoothed loss falls fastest."
        ),
        epilog=(
            "examples:\n"
            "  dlrun-lr-find model=cnn\n"
            "  dlrun-lr-find optimizer=sgd --start-lr 1e-5 --end-lr 1 --num-steps 100\n"
            "then train with the printed override:  dlrun model=cnn optimizer.lr=...\n"
            "exit codes: 0 done, 2 bad arguments or configuration"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, as dlrun takes them")
    result.add_argument(
        "--start-lr", type=float, default=DEFAULT_START_LR, help="the first step's lr (default: %(default)g)"
    )
    result.add_argument(
        "--end-lr", type=float, default=DEFAULT_END_LR, help="the last step's lr (default: %(default)g)"
    )
    result.add_argument(
        "--num-steps",
        type=int,
        default=DEFAULT_NUM_STEPS,
        help="optimizer steps from start to end (default: %(default)s)",
    )
    result.add_argument(
        "--diverge",
        type=float,
        default=DEFAULT_DIVERGE,
        help="stop once the smoothed loss exceeds this many times its lowest (default: %(default)g)",
    )
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_intermixed_args(argv)  # options before, between or after the overrides
    with exit_on_bad_input():
        check_arguments(args)
        lr_find(
            args.overrides, start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_steps, diverge=args.diverge
        )


def check_arguments(args: argparse.Namespace) -> None:
    problems = []
    if not 0 < args.start_lr < args.end_lr:
        problems.append(
            f"--start-lr = {args.start_lr:g}, --end-lr = {args.end_lr:g}: need 0 < start < end; type "
            f"--start-lr {DEFAULT_START_LR:g} --end-lr {DEFAULT_END_LR:g}"
        )
    if args.num_steps < MIN_POINTS:
        problems.append(f"--num-steps = {args.num_steps}: too few for a curve; type at least --num-steps {MIN_POINTS}")
    if args.diverge <= 1:
        problems.append(f"--diverge = {args.diverge:g}: must be above 1; type --diverge {DEFAULT_DIVERGE:g}")
    compose.parse(args.overrides)
    if problems:
        raise ConfigError(*problems)


class SweepEnded(Exception):
    """Raised by the recorder to end training: the sweep reached its last step or the loss diverged."""


def lr_find(
    overrides: Sequence[str] = (),
    *,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_steps: int = DEFAULT_NUM_STEPS,
    diverge: float = DEFAULT_DIVERGE,
) -> dict:
    """Run the test; returns what lr_find.json holds (the suggestion, the override, the files)."""
    from omegaconf import OmegaConf, open_dict
    from torch.optim.lr_scheduler import ExponentialLR

    from dlrun import build
    from dlrun.run import seed_everything
    from dlrun.schedulers import schedule
    from dlrun.trainer import NonFiniteLoss, Trainer, TrainingInterrupted
    from dlrun.validation import validate

    cfg = compose.compose(overrides)
    given = compose.gives_run_dir(overrides)
    run_dir = Path(cfg.hydra.run.dir)
    if not given:  # outputs/lr_find/<name>/<the timestamp hydra.run.dir ends in>
        run_dir = Path("outputs") / "lr_find" / cfg.name / run_dir.name
    with open_dict(cfg):  # the config a run gets: without the hydra node
        del cfg["hydra"]
    validate(cfg)
    cfg.optimizer.lr = start_lr
    seed_everything(cfg.seed)
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
    if task.manual_optimization or len(optimizers) != 1:
        raise ConfigError(
            f"task._target_ = {cfg.task._target_}: steps {len(optimizers)} optimizers of its own; the range test "
            "sweeps the lr of one optimizer the trainer steps: type a task such as task=supervised"
        )
    (optimizer,) = optimizers.values()
    gamma = (end_lr / start_lr) ** (1 / (num_steps - 1))
    recorder = Recorder(num_steps, diverge)
    settings = OmegaConf.to_container(cfg.trainer) | {"log_every_n_steps": 1, "fast_dev_run": False}
    trainer = Trainer(**settings | {"check_val_every_n_epoch": num_steps + 1}, callbacks=[recorder])
    trainer.max_epochs = math.ceil(num_steps / trainer.optimizer_steps_per_epoch(data)) + 1
    scheduled = schedule(lambda opt: ExponentialLR(opt, gamma), optimizer, interval="step")
    with contextlib.suppress(SweepEnded, NonFiniteLoss, TrainingInterrupted):  # the curve so far is the result
        trainer.fit(task, data, optimizers, [scheduled])
    if len(recorder.losses) < MIN_POINTS:
        raise ConfigError(
            f"--start-lr = {start_lr:g}: the loss diverged after {len(recorder.losses)} steps, too few for a curve; "
            f"type a lower --start-lr, or more --num-steps (at least {MIN_POINTS} steps are needed)"
        )
    return write_results(run_dir, recorder, suggest(recorder.lrs, recorder.smoothed), overrides)


class Recorder(Callback):
    """A trainer callback: each step's lr and loss, the smoothed loss, and the end of the sweep."""

    def __init__(self, num_steps: int, diverge: float):
        self.num_steps, self.diverge = num_steps, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._average = 0.0
        self._lr = None

    def on_train_batch_end(self, trainer) -> None:
        (optimizer,) = trainer.optimizers.values()
        self._lr = optimizer.param_groups[0]["lr"]  # the lr of the step about to be taken

    def on_log(self, trainer, metrics: dict[str, float]) -> None:
        loss = metrics["train/loss"]
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        smoothed = self._average / (1 - SMOOTHING ** (len(self.losses) + 1))
        self.lrs.append(self._lr)
        self.losses.append(loss)
        self.smoothed.append(smoothed)
        if (
            len(self.losses) >= self.num_steps
            or not math.isfinite(smoothed)
            or smoothed > self.diverge * min(self.smoothed)
        ):
            raise SweepEnded


def suggest(lrs: Sequence[float], smoothed: Sequence[float]) -> float:
    """The lr where the smoothed loss falls fastest against log10(lr): the steepest descent."""
    import numpy as np

    ends = slice(SKIP_START, len(lrs) - SKIP_END)
    slopes = np.gradient(np.asarray(smoothed, dtype=float), np.log10(np.asarray(lrs, dtype=float)))[ends]
    return float(lrs[SKIP_START + int(np.nanargmin(slopes))])


def write_results(run_dir: Path, recorder: Recorder, suggested: float, overrides: Sequence[str]) -> dict:
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    from dlrun import lr_curve

    run_dir.mkdir(parents=True, exist_ok=True)
    rows = list(zip(recorder.lrs, recorder.losses, recorder.smoothed, strict=True))
    with open(run_dir / "lr_find.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        writer.writerows((step, *row) for step, row in enumerate(rows, start=1))
    image = lr_curve.draw(recorder.lrs, recorder.losses, recorder.smoothed, suggested)
    image.save(run_dir / "lr_find.png")
    with SummaryWriter(str(run_dir / "tensorboard")) as events:
        for step, (lr, loss, smoothed) in enumerate(rows, start=1):
            events.add_scalar("lr_find/loss", loss, step)
            events.add_scalar("lr_find/smoothed_loss", smoothed, step)
            events.add_scalar("lr_find/lr", lr, step)
        events.add_image("lr_find/curve", np.asarray(image), len(rows), dataformats="HWC")
    override = f"optimizer.lr={suggested:.3g}"
    kept = [arg for arg in overrides if not arg.startswith(("hydra.", "optimizer.lr="))]
    result = {
        "suggested_lr": float(f"{suggested:.3g}"),
        "override": override,
        "command": " ".join(["dlrun", *kept, override]),
        "steps": len(rows),
        "png": str(run_dir / "lr_find.png"),
    }
    (run_dir / "lr_find.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"suggested learning rate: {suggested:.3g} (steepest descent of the smoothed loss, {len(rows)} steps)")
    print(f"train with:  {result['command']}")
    print(f"curve: {result['png']}")
    return result


if __name__ == "__main__":
    main()

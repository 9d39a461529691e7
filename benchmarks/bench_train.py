"""dlrun against plain PyTorch on the same work, reported as ratios (no pass/fail timing thresholds).

1. Training wall time of trainer.fit on the real digits split, CPU, for the default MLP and CNN configs:
   dlrun with the callbacks of a normal run, dlrun with callbacks=[], a hand-written loop over a torch
   DataLoader, and a hand-written loop over the split's tensors indexed by a permutation (the lower bound).
2. Start-up: the `dlrun` console script, as a subprocess, to the end of its first optimizer step and to its
   exit, against `python -c "import torch"` and a plain PyTorch script's first step.
3. With a CUDA GPU: ResNet-18 images/second, bf16 autocast + channels_last + torch.compile, dlrun vs plain.

Run `python benchmarks/bench_train.py --help` for the options; benchmarks/README.md says what each row means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlrun import build
from dlrun.callbacks.base import Callback
from dlrun.config import CONFIG_DIR, register_schemas
from dlrun.data.module import DataModule
from dlrun.run import seed_everything
from dlrun.trainer import Trainer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
DLRUN = Path(sys.executable).with_name("dlrun")
MODELS = ("mlp", "cnn")

# The variants of section 1; ratios are taken against the plain loops and the bare Trainer.
DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS = "dlrun", "dlrun_bare", "loader", "tensors"
ONLY_CHECKPOINT, ONLY_TENSORBOARD, ONLY_PROGRESS = "only_checkpoint", "only_tensorboard", "only_progress"
CALLBACKS = ("early_stopping", "checkpoint", "tensorboard", "progress")
KEEP = {ONLY_CHECKPOINT: "checkpoint", ONLY_TENSORBOARD: "tensorboard", ONLY_PROGRESS: "progress"}


# -- section 1: training wall time ------------------------------------------------------------------


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


@dataclass
class Measured:
    seconds: float
    val_loss: float  # after the last epoch: a check that the variants did the same work
    epochs: int


def run_dlrun(cfg: DictConfig, data: DataModule, *, callbacks: bool) -> Measured:
    """dlrun's own path (dlrun/run.py): seed, build model, task, optimizer, trainer, schedulers; time fit()."""
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-") as run_dir, terminal_sink():
        seed_everything(cfg.seed)
        model = build.model(cfg)
        task = build.task(cfg, model, data)
        optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
        if callbacks:
            trainer = build.trainer(cfg, Path(run_dir))
        else:
            trainer = Trainer(**OmegaConf.to_container(cfg.trainer), callbacks=[])
        schedulers = build.schedulers(cfg, optimizers, trainer.optimizer_steps_per_epoch(data))
        start = time.perf_counter()
        state = trainer.fit(task, data, optimizers, schedulers)
        seconds = time.perf_counter() - start
        if callbacks:
            trainer.test(task, data)  # untimed: ends the run as dlrun does (closes the TensorBoard writer)
    return Measured(seconds, state.metrics["val/loss"], state.epoch)


def adam(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of the config (conf/optimizer/adam.yaml), written out by hand."""
    opt = cfg.optimizer
    assert opt._target_ == "torch.optim.Adam", opt._target_
    return torch.optim.Adam(
        model.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )


def plain_model(cfg: DictConfig) -> nn.Module:
    """The same network, the same initial weights: seeded as dlrun seeds, built by the config's builder."""
    seed_everything(cfg.seed)
    return build.model(cfg)


@torch.no_grad()
def validate(model: nn.Module, criterion: nn.Module, batches) -> tuple[float, float]:
    """Mean loss and accuracy over the validation split, as a plain loop would report them."""
    model.eval()
    loss_sum, correct, count = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
    for inputs, targets in batches:
        output = model(inputs)
        loss_sum += criterion(output, targets) * len(targets)
        correct += (output.argmax(dim=1) == targets).sum()
        count += len(targets)
    return (loss_sum / count).item(), correct.item() / count


def run_plain_loader(cfg: DictConfig, data: DataModule) -> Measured:
    """The textbook loop: DataLoader over a TensorDataset, shuffle=True, validation each epoch."""
    model = plain_model(cfg)
    optimizer = adam(cfg, model)
    criterion = nn.CrossEntropyLoss()
    batch_size = cfg.dataset.batch_size
    train = DataLoader(TensorDataset(*data.train), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(*data.val), batch_size=batch_size)
    epochs = cfg.trainer.max_epochs
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for inputs, targets in train:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
        val_loss, _accuracy = validate(model, criterion, val)
    return Measured(time.perf_counter() - start, val_loss, epochs)


def run_plain_tensors(cfg: DictConfig, data: DataModule) -> Measured:
    """The lower bound: the split's tensors indexed by a permutation per epoch (seeded as dlrun's)."""
    model = plain_model(cfg)
    optimizer = adam(cfg, model)
    criterion = nn.CrossEntropyLoss()
    batch_size = cfg.dataset.batch_size
    (inputs, targets), (val_inputs, val_targets) = data.train, data.val
    val = [
        (val_inputs[i : i + batch_size], val_targets[i : i + batch_size])
        for i in range(0, len(val_targets), batch_size)
    ]
    epochs = cfg.trainer.max_epochs
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        for first in range(0, len(order), batch_size):
            index = order[first : first + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs[index]), targets[index])
            loss.backward()
            optimizer.step()
        val_loss, _accuracy = validate(model, criterion, val)
    return Measured(time.perf_counter() - start, val_loss, epochs)


@dataclass
class TrainRow:
    model: str
    variant: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(run.seconds for run in self.runs)


def measure(variant: str, cfg: DictConfig, data: DataModule) -> Measured:
    if variant == PLAIN_LOADER:
        return run_plain_loader(cfg, data)
    if variant == PLAIN_TENSORS:
        return run_plain_tensors(cfg, data)
    return run_dlrun(cfg, data, callbacks=variant != DLRUN_BARE)


def bench_training(
    models: tuple[str, ...], epochs: int, rounds: int, breakdown: bool, say: Callable[[str], None]
) -> dict[str, dict[str, TrainRow]]:
    variants = [DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS] + (list(KEEP) if breakdown else [])
    results: dict[str, dict[str, TrainRow]] = {}
    for model in models:
        configs = {variant: bench_config(model, epochs, KEEP.get(variant)) for variant in variants}
        data = build.data(configs[DLRUN_FULL])  # the real dlrun split, built once; `to(cpu)` keeps it as is
        for variant in variants:  # warm-up, untimed: first-call costs (allocator, kernels, lazy imports)
            measure(variant, bench_config(model, 1, KEEP.get(variant)), data)
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
                + "  ".join(f"{variant} {rows[variant].runs[-1].seconds:.2f}s" for variant in variants)
            )
        results[model] = rows
    return results


# -- section 2: start-up ------------------------------------------------------------------------------

# Installed as sitecustomize.py (through PYTHONPATH) in some dlrun subprocesses; dlrun's files are not touched
# and the command is the real console script. With DLRUN_BENCH_FIRST_STEP=<file>, once dlrun.trainer is
# imported, Trainer._optimizer_step is wrapped to write time.monotonic() (one clock for all processes) after the
# first optimizer step, then end the process. With DLRUN_BENCH_EXIT_AFTER_RUN=1, dlrun.run.run is wrapped to
# end the process with os._exit(0) as soon as the run returns: whatever is left is the interpreter's teardown.
STEP_HOOK = """
import os, sys, time

_FIRST_STEP = os.environ.get("DLRUN_BENCH_FIRST_STEP")
_EXIT_AFTER_RUN = os.environ.get("DLRUN_BENCH_EXIT_AFTER_RUN")


def _patch_trainer(module):
    step = module.Trainer._optimizer_step

    def first_step(self):
        step(self)
        with open(_FIRST_STEP, "w") as file:
            file.write(repr(time.monotonic()))
        os._exit(0)

    module.Trainer._optimizer_step = first_step


def _patch_run(module):
    run = module.run

    def run_then_exit(*args, **kwargs):
        run(*args, **kwargs)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    module.run = run_then_exit


_PATCHES = {}
if _FIRST_STEP:
    _PATCHES["dlrun.trainer"] = _patch_trainer
if _EXIT_AFTER_RUN:
    _PATCHES["dlrun.run"] = _patch_run

if _PATCHES:
    import importlib.abc
    import importlib.util

    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name not in _PATCHES:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            load, patch = spec.loader.exec_module, _PATCHES.pop(name)

            def exec_module(module):
                load(module)
                patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Hook())
"""

# A hand-written PyTorch script's way to its first step on digits-sized data: import, model, Adam, one step.
PLAIN_FIRST_STEP = """
import sys, time, torch
from torch import nn
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
inputs, targets = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
optimizer.zero_grad()
nn.functional.cross_entropy(model(inputs), targets).backward()
optimizer.step()
open(sys.argv[1], "w").write(repr(time.monotonic()))
"""


@dataclass
class StartRow:
    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def dlrun_args(run_dir: str) -> list[str]:
    return [
        "trainer.device=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_batches=1",
        "quiet=true",
        "print_config=false",
        f"hydra.run.dir={run_dir}",
    ]


DLRUN_COMMAND = f"dlrun {' '.join(dlrun_args('<tmp dir>'))}"


def timed_process(argv: list[str], env: dict[str, str], cwd: str, marker: Path | None = None) -> float:
    """Seconds from spawning argv to its exit, or to the time.monotonic() it writes into marker."""
    if marker is not None:
        marker.unlink(missing_ok=True)
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    end = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    if marker is None:
        return end - start
    if not marker.is_file():
        raise RuntimeError(
            f"{' '.join(argv)} never reached its first step:\n{done.stdout[-1000:]}{done.stderr[-1000:]}"
        )
    return float(marker.read_text()) - start


def bench_startup(reps: int, threads: int, say: Callable[[str], None]) -> tuple[dict[str, StartRow], list]:
    python, dlrun = sys.executable, str(DLRUN)
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-start-") as tmp:
        hook_dir, marker = Path(tmp, "hook"), Path(tmp, "first_step")
        hook_dir.mkdir()
        (hook_dir / "sitecustomize.py").write_text(STEP_HOOK)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": str(threads)}
        first_step = env | {"PYTHONPATH": str(hook_dir), "DLRUN_BENCH_FIRST_STEP": str(marker)}
        exit_after_run = env | {"PYTHONPATH": str(hook_dir), "DLRUN_BENCH_EXIT_AFTER_RUN": "1"}
        counter = iter(range(10**6))

        def run_dir() -> str:
            return str(Path(tmp, f"run{next(counter)}"))

        rows = {
            "pass": StartRow("python -c pass"),
            "torch": StartRow('python -c "import torch"'),
            "plain": StartRow("plain PyTorch script, spawn to end of 1st step"),
            "first": StartRow("dlrun, spawn to end of 1st optimizer step"),
            "whole": StartRow("dlrun, whole process (1 batch per split)"),
            "no_teardown": StartRow("dlrun, same, os._exit(0) when run() returns"),
        }
        commands: dict[str, Callable[[], float]] = {
            "pass": lambda: timed_process([python, "-c", "pass"], env, tmp),
            "torch": lambda: timed_process([python, "-c", "import torch"], env, tmp),
            "plain": lambda: timed_process([python, "-c", PLAIN_FIRST_STEP, str(marker)], env, tmp, marker),
            "first": lambda: timed_process([dlrun, *dlrun_args(run_dir())], first_step, tmp, marker),
            "whole": lambda: timed_process([dlrun, *dlrun_args(run_dir())], env, tmp),
            "no_teardown": lambda: timed_process([dlrun, *dlrun_args(run_dir())], exit_after_run, tmp),
        }
        commands["whole"]()  # warm-up, untimed: puts torch's and dlrun's files in the OS file cache
        for rep in range(reps):
            order = list(commands) if rep % 2 == 0 else list(commands)[::-1]
            for key in order:
                rows[key].seconds.append(commands[key]())
            say(f"start-up rep {rep + 1}/{reps}: " + "  ".join(f"{k} {rows[k].seconds[-1]:.2f}s" for k in commands))
        imports = import_breakdown([python, "-X", "importtime", dlrun, *dlrun_args(run_dir())], env, tmp)
    return rows, imports


def import_breakdown(argv: list[str], env: dict[str, str], cwd: str) -> list[tuple[str, float]]:
    """Self import time per top-level package in a whole dlrun run (python -X importtime), largest first."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            root = match.group(2).split(".")[0]
            totals[root] = totals.get(root, 0.0) + int(match.group(1)) / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])


# -- section 3: GPU throughput ------------------------------------------------------------------------


class EpochTimer(Callback):
    """A dlrun callback: wall time of each epoch's training batches, synchronised with the device."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.count, self.total, self.start = device, [], 0, 0, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        self._sync()
        self.count, self.total, self.start = 0, num_batches, time.perf_counter()

    def on_train_batch_end(self, trainer) -> None:
        self.count += 1
        if self.count == self.total:
            self._sync()
            self.seconds.append(time.perf_counter() - self.start)


@dataclass
class GpuResult:
    device: str
    images_per_s: dict[str, float]
    epochs: int
    samples: int
    batch_size: int


def bench_gpu(device: torch.device, *, samples: int, batch_size: int, epochs: int, compile: bool = True) -> GpuResult:
    """ResNet-18 (dlrun's builder, CIFAR-10 stem) on random 3x32x32 images, bf16 autocast, channels_last.

    Train throughput of epochs 2.. (epoch 1 compiles); validation only after the last epoch, untimed.
    """
    from dlrun.models.vision import resnet
    from dlrun.tasks.supervised import SupervisedTask

    assert samples % batch_size == 0, "whole batches only: a ragged last batch would recompile"
    generator = torch.Generator().manual_seed(0)

    def images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(count, 3, 32, 32, generator=generator).to(device).contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (count,), generator=generator).to(device)

    train, val = images(samples), images(batch_size * 2)

    def network() -> nn.Module:
        torch.manual_seed(0)
        net = resnet(in_shape=[3, 32, 32], num_outputs=10).to(device, memory_format=torch.channels_last)
        return torch.compile(net) if compile else net

    # dlrun: its Trainer and task over a DataModule of the same tensors (indexed on the device).
    timer = EpochTimer(device)
    model = network()
    task = SupervisedTask(model=model, criterion=nn.CrossEntropyLoss(), problem="classification", num_classes=10)
    optimizers = {"model": torch.optim.Adam(model.parameters(), lr=1e-3)}
    data = DataModule(train, val, val, batch_size=batch_size)
    trainer = Trainer(
        max_epochs=epochs, device=device.type, precision="bf16", check_val_every_n_epoch=epochs, callbacks=[timer]
    )
    trainer.fit(task, data, optimizers)
    dlrun_seconds = statistics.median(timer.seconds[1:])

    # plain: the same step by hand.
    model = network()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    seconds = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(samples, generator=torch.Generator().manual_seed(epoch)).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for first in range(0, samples, batch_size):
            index = order[first : first + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = criterion(model(train[0][index]), train[1][index])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        model.eval()
        for first in range(0, len(val[1]), batch_size):
            model(val[0][first : first + batch_size])
    plain_seconds = statistics.median(seconds[1:])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    return GpuResult(
        name, {"dlrun": samples / dlrun_seconds, "plain": samples / plain_seconds}, epochs, samples, batch_size
    )


# -- report -------------------------------------------------------------------------------------------

SHORT = {
    DLRUN_FULL: "dlrun, callbacks of a normal run",
    DLRUN_BARE: "dlrun, callbacks=[]",
    ONLY_CHECKPOINT: "dlrun, checkpoint callback only",
    ONLY_TENSORBOARD: "dlrun, tensorboard callback only",
    ONLY_PROGRESS: "dlrun, progress callback only",
    PLAIN_LOADER: "plain loop, DataLoader",
    PLAIN_TENSORS: "plain loop, tensors (lower bound)",
}


@dataclass
class Report:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"{platform.platform()}, {cpu}, {os.cpu_count()} logical CPUs, GPU: {gpu}",
        f"Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
        f"torch.set_num_threads({torch.get_num_threads()}); OMP_NUM_THREADS={torch.get_num_threads()} in subprocesses",
    ]


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x"


def training_reports(results: dict[str, dict[str, TrainRow]], epochs: int, rounds: int) -> list[Report]:
    summary = []
    for model, variants in results.items():
        full, bare, loader, low = (
            variants[key].median for key in (DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS)
        )
        summary.append(
            [
                model,
                ratio(full, low),
                ratio(full, loader),
                ratio(bare, low),
                ratio(bare, loader),
                f"{(full - bare) / full * 100:.0f}%",
            ]
        )
    detail = []
    for model, variants in results.items():
        bare, loader, low = (variants[key].median for key in (DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS))
        for key, row in variants.items():
            detail.append(
                [
                    model,
                    SHORT[key],
                    f"{row.median:.3f}",
                    f"{row.median / epochs * 1000:.1f}",
                    ratio(row.median, low),
                    ratio(row.median, loader),
                    ratio(row.median, bare) if key.startswith(("dlrun", "only")) else "",
                    f"{statistics.median(run.val_loss for run in row.runs):.4f}",
                ]
            )
    setting = f"fit(), digits, CPU, {epochs} epochs, batch 64, validation every epoch; medians of {rounds} rounds"
    return [
        Report(
            f"Training: ratios of wall time ({setting})",
            [
                "model",
                "dlrun / lower bound",
                "dlrun / DataLoader",
                "bare / lower bound",
                "bare / DataLoader",
                "callbacks' share",
            ],
            summary,
            "dlrun = Trainer with the callbacks of a normal run; bare = Trainer(callbacks=[]); "
            "lower bound = plain loop over tensors[randperm].",
        ),
        Report(
            "Training: each variant",
            ["model", "variant", "median s", "ms/epoch", "/ lower bound", "/ DataLoader", "/ bare", "val loss"],
            detail,
            "val loss after the last epoch: dlrun and the lower bound use the same seeds and batch order, so the "
            "same value there means the same arithmetic.",
        ),
    ]


def startup_reports(rows: dict[str, StartRow], imports: list[tuple[str, float]], reps: int) -> list[Report]:
    torch_s, plain_s = rows["torch"].median, rows["plain"].median
    first, whole, no_teardown = rows["first"].median, rows["whole"].median, rows["no_teardown"].median
    summary = [
        ["dlrun to 1st step / import torch", ratio(first, torch_s)],
        ["dlrun to 1st step / plain script to 1st step", ratio(first, plain_s)],
        ["dlrun whole 1-batch run / import torch", ratio(whole, torch_s)],
        ["dlrun after its 1st step, to exit (s)", f"{whole - first:.2f}"],
        ["  of which interpreter teardown (s)", f"{whole - no_teardown:.2f}"],
    ]
    table = [
        [row.label, f"{row.median:.2f}", ratio(row.median, torch_s), ratio(row.median, plain_s)]
        for row in rows.values()
    ]
    total = sum(seconds for _, seconds in imports) or 1.0
    breakdown = [[name, f"{seconds:.2f}", f"{seconds / total * 100:.0f}%"] for name, seconds in imports[:10]]
    return [
        Report(
            f"Start-up: ratios (subprocesses, medians of {reps})",
            ["ratio", "value"],
            summary,
            f"dlrun runs as: {DLRUN_COMMAND}; the 1st step is timed by a sitecustomize hook (see README).",
        ),
        Report(
            "Start-up: each command (s, spawn to exit unless said)",
            ["command", "s", "/ import torch", "/ plain 1st step"],
            table,
        ),
        Report(
            "Start-up: import time of a dlrun run by top-level package",
            ["package", "s", "share"],
            breakdown,
            "python -X importtime, self times summed per package (importtime inflates them; read the shares).",
        ),
    ]


def gpu_reports(result: GpuResult | None) -> list[Report]:
    if result is None:
        return [Report("GPU: ResNet-18 images/second", ["result"], [["no GPU: skipped"]])]
    dlrun, plain = result.images_per_s["dlrun"], result.images_per_s["plain"]
    rows = [["dlrun Trainer", f"{dlrun:,.0f}", ratio(dlrun, plain)], ["plain loop", f"{plain:,.0f}", "1.00x"]]
    return [
        Report(
            f"GPU: ResNet-18 training images/second on {result.device}",
            ["variant", "images/s", "/ plain"],
            rows,
            f"bf16 autocast + channels_last + torch.compile; {result.samples} random 3x32x32 images on the GPU, "
            f"batch {result.batch_size}; median of epochs 2..{result.epochs} (epoch 1 compiles).",
        )
    ]


def print_reports(console: Console, reports: list[Report]) -> None:
    for report in reports:
        table = Table(title=report.title, title_justify="left", caption=report.note or None, caption_justify="left")
        for index, name in enumerate(report.header):
            table.add_column(
                name, justify="left" if index == 0 or report.header[index] in ("variant", "command") else "right"
            )
        for row in report.rows:
            table.add_row(*row)
        console.print(table)


def markdown(reports: list[Report]) -> str:
    parts = []
    for report in reports:
        parts += [f"### {report.title}", ""]
        aligns = ["---" if i == 0 or name in ("variant", "command") else "--:" for i, name in enumerate(report.header)]
        parts.append("| " + " | ".join(report.header) + " |")
        parts.append("|" + "|".join(aligns) + "|")
        parts += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in report.rows]
        parts += ["", report.note, ""] if report.note else [""]
    return "\n".join(parts)


def write_results(reports: list[Report], args: argparse.Namespace, elapsed: float) -> None:
    lines = [
        "# dlrun benchmark results",
        "",
        f"`python benchmarks/bench_train.py {' '.join(sys.argv[1:])}`, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, took {elapsed:.0f} s "
        f"({args.epochs} epochs, {args.rounds} rounds, {args.startup_reps} start-up repetitions).",
        "",
        *(f"- {line}" for line in machine()),
        "",
        "Ratios are of medians; how each figure is measured: [README.md](README.md).",
        "",
        markdown(reports),
    ]
    RESULTS.write_text("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs per training run (dlrun's default: 30)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant; medians are reported")
    parser.add_argument("--startup-reps", type=int, default=3, help="repetitions of each start-up command")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (and OMP_NUM_THREADS)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model configs (mlp,cnn)")
    parser.add_argument("--breakdown", action="store_true", help="also time dlrun with each callback alone")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: train,startup,gpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check of the script, not figures")
    parser.add_argument("--write", action="store_true", help=f"write the figures to {RESULTS.relative_to(HERE.parent)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.startup_reps = 2, 1, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.perf_counter()
    torch.set_num_threads(args.threads)
    register_schemas()
    console = Console() if sys.stdout.isatty() else Console(width=120)
    skip = set(filter(None, args.skip.split(",")))
    say = console.log
    for line in machine():
        console.print(line, style="dim")
    reports: list[Report] = []
    if "train" not in skip:
        models = tuple(filter(None, args.models.split(",")))
        results = bench_training(models, args.epochs, args.rounds, args.breakdown, say)
        reports += training_reports(results, args.epochs, args.rounds)
    if "startup" not in skip:
        rows, imports = bench_startup(args.startup_reps, args.threads, say)
        reports += startup_reports(rows, imports, args.startup_reps)
    if "gpu" not in skip:
        result = None
        if torch.cuda.is_available():
            size = {"samples": 2048, "epochs": 3} if args.quick else {"samples": 25600, "epochs": 4}
            result = bench_gpu(torch.device("cuda"), batch_size=256, **size)
        else:
            say("no GPU: skipped")
        reports += gpu_reports(result)
    print_reports(console, reports)
    if args.write:
        write_results(reports, args, time.perf_counter() - began)
        console.print(f"wrote {RESULTS}")
    console.print(f"took {time.perf_counter() - began:.0f} s", style="dim")


if __name__ == "__main__":
    main()

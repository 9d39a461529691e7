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
import itertools
import math
import os
import platform
import re
import resource
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
from rich.markup import escape
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlrun import build
from dlrun.callbacks.base import Callback
from dlrun.config import CONFIG_DIR, register_schemas, trainer_defaults
from dlrun.data.module import DataModule
from dlrun.data.spec import DataSpec
from dlrun.run import seed_everything
from dlrun.trainer import Trainer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
DLRUN = Path(sys.executable).with_name("dlrun")
MODELS = ("mlp", "cnn")

# The variants of section 1; ratios are taken against the plain loops and the bare Trainer.
DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS = "dlrun", "dlrun_bare", "loader", "tensors"
PLAIN_METRICS = "tensors_metrics"  # the lower bound plus the training metrics dlrun reports
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


class Stopwatch:
    """Wall time and this process's CPU time (all its threads) of a with-block.

    With one compute thread, CPU / wall near 1 means the process had a core to itself; much less means the
    machine was busy with other work, and the wall times (hence their ratios) are noisy. Then the CPU-time
    ratios are the steadier figure (but they leave out waiting, e.g. for fsync).
    """

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


@dataclass
class Measured:
    seconds: float  # wall
    cpu_seconds: float
    val_loss: float  # after the last epoch: a check that the variants did the same work
    epochs: int


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


def adam(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of the config (conf/optimizer/adam.yaml), written out by hand."""
    opt = cfg.optimizer
    assert opt._target_ == "torch.optim.Adam", opt._target_
    return torch.optim.Adam(
        model.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )


def plain_model(cfg: DictConfig, data: DataModule) -> nn.Module:
    """The same network, the same initial weights: seeded as dlrun seeds, built by the config's builder."""
    seed_everything(cfg.seed)
    return build.model(cfg, data.spec)


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
    model = plain_model(cfg, data)
    optimizer = adam(cfg, model)
    criterion = nn.CrossEntropyLoss()
    batch_size = cfg.dataset.batch_size
    train = DataLoader(TensorDataset(*data.train), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(*data.val), batch_size=batch_size)
    epochs = cfg.trainer.max_epochs
    with Stopwatch() as clock:
        for _ in range(epochs):
            model.train()
            for inputs, targets in train:
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(inputs), targets)
                loss.backward()
                optimizer.step()
            val_loss, _accuracy = validate(model, criterion, val)
    return Measured(clock.wall, clock.cpu, val_loss, epochs)


def run_plain_tensors(cfg: DictConfig, data: DataModule, *, training_metrics: bool = False) -> Measured:
    """The lower bound: the split's tensors indexed by a permutation per epoch (seeded as dlrun's).

    training_metrics: also what dlrun reports of training, written by hand as dlrun computes it: each step's loss
    and output kept on the device, and every log interval (and at the epoch's end) the losses summed and the
    correct predictions counted, read once an epoch (train/loss_epoch, train/acc)."""
    model = plain_model(cfg, data)
    optimizer = adam(cfg, model)
    criterion = nn.CrossEntropyLoss()
    batch_size, interval = cfg.dataset.batch_size, cfg.trainer.log_every_n_steps
    (inputs, targets), (val_inputs, val_targets) = data.train, data.val
    val = [
        (val_inputs[i : i + batch_size], val_targets[i : i + batch_size])
        for i in range(0, len(val_targets), batch_size)
    ]
    epochs = cfg.trainer.max_epochs

    @torch.no_grad()
    def add_up(kept: list, sums: torch.Tensor) -> torch.Tensor:
        losses, outputs, kept_targets = zip(*kept, strict=True)
        correct = torch.cat(outputs).argmax(dim=1).eq(torch.cat(kept_targets)).count_nonzero()
        kept.clear()
        return sums + torch.stack([torch.stack(losses).sum(), correct])

    with Stopwatch() as clock:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(cfg.seed + epoch))
            kept, sums = [], torch.zeros(2)
            for step, first in enumerate(range(0, len(order), batch_size), start=1):
                index = order[first : first + batch_size]
                optimizer.zero_grad(set_to_none=True)
                output, target = model(inputs[index]), targets[index]
                loss = criterion(output, target)
                loss.backward()
                optimizer.step()
                if training_metrics:
                    kept.append((loss, output, target))
                    if step % interval == 0:
                        sums = add_up(kept, sums)
            if training_metrics:
                loss_sum, correct = (add_up(kept, sums) if kept else sums).tolist()
                _epoch_means = loss_sum / math.ceil(len(order) / batch_size), correct / len(order)
            val_loss, _accuracy = validate(model, criterion, val)
    return Measured(clock.wall, clock.cpu, val_loss, epochs)


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
    variants = [DLRUN_FULL, DLRUN_BARE, PLAIN_LOADER, PLAIN_TENSORS, PLAIN_METRICS] + (list(KEEP) if breakdown else [])
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
                + "  ".join(
                    f"{variant} {rows[variant].runs[-1].seconds:.2f}s (CPU {rows[variant].runs[-1].cpu_seconds:.2f})"
                    for variant in variants
                )
            )
        results[model] = rows
    return results


# -- section 2: start-up ------------------------------------------------------------------------------


# What some dlrun subprocesses get besides dlrun_args: callbacks of benchmarks/startup_callbacks.py (on their
# PYTHONPATH), added through dlrun's and Hydra's own callback options; the command is the real console script.
def first_step_args(marker: Path) -> list[str]:
    """End the process after its first optimizer step, writing the time to marker."""
    return ["+callbacks.first_step._target_=startup_callbacks.FirstStep", f"+callbacks.first_step.marker={marker}"]


EXIT_AFTER_JOB_ARGS = ["+hydra.callbacks.exit_after_job._target_=startup_callbacks.ExitAfterJob"]


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
open(sys.argv[1], "w").write(f"{time.monotonic()!r} {time.process_time()!r}")
"""


@dataclass
class StartRow:
    label: str
    seconds: list[float] = field(default_factory=list)  # wall
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


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


def timed_process(argv: list[str], env: dict[str, str], cwd: str, marker: Path | None = None) -> tuple[float, float]:
    """Wall and CPU seconds from spawning argv to its exit, or to the point where it writes
    "<time.monotonic()> <time.process_time()>" into marker."""
    if marker is not None:
        marker.unlink(missing_ok=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    end = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    if marker is None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        return end - start, cpu
    if not marker.is_file():
        raise RuntimeError(
            f"{' '.join(argv)} never reached its first step:\n{done.stdout[-1000:]}{done.stderr[-1000:]}"
        )
    at, cpu = (float(value) for value in marker.read_text().split())
    return at - start, cpu


def bench_startup(
    reps: int, threads: int, say: Callable[[str], None]
) -> tuple[dict[str, StartRow], list[tuple[str, float, str]]]:
    python, dlrun = sys.executable, str(DLRUN)
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-start-") as tmp:
        marker = Path(tmp, "first_step")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": str(threads)}
        with_callbacks = env | {"PYTHONPATH": str(HERE)}  # startup_callbacks.py
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
        commands: dict[str, Callable[[], tuple[float, float]]] = {
            "pass": lambda: timed_process([python, "-c", "pass"], env, tmp),
            "torch": lambda: timed_process([python, "-c", "import torch"], env, tmp),
            "plain": lambda: timed_process([python, "-c", PLAIN_FIRST_STEP, str(marker)], env, tmp, marker),
            "first": lambda: timed_process(
                [dlrun, *dlrun_args(run_dir()), *first_step_args(marker)], with_callbacks, tmp, marker
            ),
            "whole": lambda: timed_process([dlrun, *dlrun_args(run_dir())], env, tmp),
            "no_teardown": lambda: timed_process(
                [dlrun, *dlrun_args(run_dir()), *EXIT_AFTER_JOB_ARGS], with_callbacks, tmp
            ),
        }
        commands["whole"]()  # warm-up, untimed: puts torch's and dlrun's files in the OS file cache
        for rep in range(reps):
            order = list(commands) if rep % 2 == 0 else list(commands)[::-1]
            for key in order:
                wall, cpu = commands[key]()
                rows[key].seconds.append(wall)
                rows[key].cpu_seconds.append(cpu)
            say(f"start-up rep {rep + 1}/{reps}: " + "  ".join(f"{k} {rows[k].seconds[-1]:.2f}s" for k in commands))
        imports = import_breakdown([dlrun, *dlrun_args(run_dir())], env, tmp)
    return rows, imports


def import_breakdown(argv: list[str], env: dict[str, str], cwd: str) -> list[tuple[str, float, str]]:
    """What importing each dlrun module costs in a whole run, from Python's own import profiler (-X importtime):
    (module, seconds less the dlrun modules it imports itself, the packages it brought in)."""
    done = subprocess.run(argv, cwd=cwd, env=env | {"PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    rows = []
    for name, seconds, modules in dlrun_imports(done.stderr):
        packages: dict[str, int] = {}
        for module in modules:
            root = module.split(".")[0]
            if root != "dlrun" and not root.startswith("_"):
                packages[root] = packages.get(root, 0) + 1
        biggest = sorted(packages, key=lambda root: -packages[root])[:4]
        rows.append((name, seconds, ", ".join(biggest) + (", ..." if len(packages) > 4 else "")))
    return sorted(rows, key=lambda row: -row[1])


@dataclass
class ImportNode:
    name: str
    cumulative_us: int  # the import with those it made, in microseconds
    inner: list[ImportNode]  # the imports it made


def dlrun_imports(importtime: str) -> list[tuple[str, float, list[str]]]:
    """Each dlrun module in -X importtime's report: its seconds less those of the dlrun modules it imports, and the
    other modules it brought in. The report lists an import after those it made, indented one level deeper."""
    waiting: dict[int, list[ImportNode]] = {}  # by depth: the imports whose importer is not listed yet
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)$", line)
        if match:
            depth = len(match[2]) // 2
            node = ImportNode(match[3], int(match[1]), waiting.pop(depth + 1, []))
            waiting.setdefault(depth, []).append(node)
    rows = []

    def visit(node: ImportNode) -> None:
        if not is_dlrun(node.name):
            for inner in node.inner:
                visit(inner)
            return
        nested, brought, pending = [], [], list(node.inner)
        while pending:  # what node imported, down to (not into) the dlrun modules among them
            inner = pending.pop()
            if is_dlrun(inner.name):
                nested.append(inner)
            else:
                brought.append(inner.name)
                pending += inner.inner
        rows.append((node.name, (node.cumulative_us - sum(inner.cumulative_us for inner in nested)) / 1e6, brought))
        for inner in nested:
            visit(inner)

    for node in waiting.get(0, []):
        visit(node)
    return rows


def is_dlrun(module: str) -> bool:
    return module.split(".")[0] == "dlrun"


# -- section 3: GPU throughput ------------------------------------------------------------------------


class EpochTimer(Callback):
    """A dlrun callback: the time stamp (device synchronised) at the start of each training epoch.

    The differences between consecutive stamps are whole epochs of dlrun's training, its per-epoch bookkeeping
    included; validation runs only after the last epoch, whose length is never taken.
    """

    def __init__(self, device: torch.device):
        self.device, self.starts = device, []

    def on_train_epoch_start(self, trainer, num_batches: int) -> None:
        synchronize(self.device)
        self.starts.append(time.perf_counter())

    @property
    def seconds(self) -> list[float]:
        return [after - before for before, after in itertools.pairwise(self.starts)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class GpuResult:
    device: str
    images_per_s: dict[str, float]
    epochs: int
    samples: int
    batch_size: int


def resnet18_small(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with the usual stem for 32x32 images (3x3 stride-1 conv, no max pooling)."""
    from torchvision.models import resnet18

    net = resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def bench_gpu(
    device: torch.device, *, samples: int, batch_size: int, epochs: int, compiled: bool = True, precision: str = "bf16"
) -> GpuResult:
    """ResNet-18 on random 3x32x32 images held on the device, bf16 autocast, channels_last, torch.compile.
    (compiled=False and precision="32" check the section on a CPU, where bf16 convolutions are emulated and slow.)

    dlrun: Trainer(precision="bf16", channels_last=True, compile=True) given the plain network; plain: the
    network made channels_last and compiled by hand, the same step written out. Images/second of training,
    median over epochs 2..epochs-1 (epoch 1 compiles; dlrun validates after its last epoch, untimed).
    """
    from dlrun.tasks.supervised import SupervisedTask

    assert epochs >= 3, "epoch 1 compiles and the last one is not timed: at least 3"
    assert samples % batch_size == 0, "whole batches only: a ragged last batch would recompile"
    generator = torch.Generator().manual_seed(0)

    def images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(count, 3, 32, 32, generator=generator).to(device).contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (count,), generator=generator).to(device)

    train, val = images(samples), images(batch_size * 2)
    torch.backends.cudnn.benchmark = True  # as dlrun's Trainer sets it (unless deterministic)

    # dlrun: its Trainer and task over a DataModule of the same tensors (indexed on the device).
    torch.manual_seed(0)
    network = resnet18_small()
    task = SupervisedTask(model=network, criterion=nn.CrossEntropyLoss(), problem="classification", num_classes=10)
    optimizers = {"model": torch.optim.Adam(network.parameters(), lr=1e-3)}
    timer = EpochTimer(device)
    settings = {
        "max_epochs": epochs,
        "device": device.type,
        "precision": precision,
        "channels_last": True,
        "compile": compiled,
        "check_val_every_n_epoch": epochs,
    }
    trainer = Trainer(**(trainer_defaults() | settings), callbacks=[timer])
    spec = DataSpec(in_shape=list(train[0].shape[1:]), class_names=[str(label) for label in range(10)])
    trainer.fit(task, DataModule(train, val, val, spec, batch_size=batch_size), optimizers)
    dlrun_seconds = statistics.median(timer.seconds[1:])

    # plain: the same by hand.
    torch.manual_seed(0)
    network = resnet18_small().to(device, memory_format=torch.channels_last)
    model = torch.compile(network) if compiled else network
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    seconds = []
    for epoch in range(epochs - 1):
        model.train()
        order = torch.randperm(samples, generator=torch.Generator().manual_seed(epoch)).to(device)
        synchronize(device)
        start = time.perf_counter()
        for first in range(0, samples, batch_size):
            index = order[first : first + batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = criterion(model(train[0][index]), train[1][index])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    plain_seconds = statistics.median(seconds[1:])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    return GpuResult(
        name, {"dlrun": samples / dlrun_seconds, "plain": samples / plain_seconds}, epochs, samples, batch_size
    )


# -- report -------------------------------------------------------------------------------------------

TEXT_COLUMNS = ("clock", "variant", "command", "brought in (most modules first)")  # left-aligned, as the first column

SHORT = {
    DLRUN_FULL: "dlrun, callbacks of a normal run",
    DLRUN_BARE: "dlrun, callbacks=[]",
    ONLY_CHECKPOINT: "dlrun, checkpoint callback only",
    ONLY_TENSORBOARD: "dlrun, tensorboard callback only",
    ONLY_PROGRESS: "dlrun, progress callback only",
    PLAIN_LOADER: "plain loop, DataLoader",
    PLAIN_TENSORS: "plain loop, tensors (lower bound)",
    PLAIN_METRICS: "plain loop, tensors, + training loss and accuracy as dlrun sums them",
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


BUSY = 0.85  # CPU/wall below this (one compute thread): other work took the CPU, wall times are unreliable

# How the summaries pick one figure out of the repetitions of a variant.
CLOCKS: tuple[tuple[str, Callable], ...] = (
    ("wall, median", lambda row: row.median),
    ("CPU, median", lambda row: row.cpu_median),
    ("wall, best", lambda row: row.best),
)


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
                    SHORT[key],
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


def paired(after: StartRow, before: StartRow) -> float:
    """Median of the differences within each repetition (the two ran back to back)."""
    return statistics.median(a - b for a, b in zip(after.seconds, before.seconds, strict=True))


def startup_reports(rows: dict[str, StartRow], imports: list[tuple[str, float, str]], reps: int) -> list[Report]:
    torch_row, plain, first, whole, no_teardown = (rows[k] for k in ("torch", "plain", "first", "whole", "no_teardown"))

    def both(row: StartRow, reference: StartRow) -> list[str]:
        return [ratio(row.median, reference.median), ratio(row.cpu_median, reference.cpu_median)]

    def every(row: StartRow, reference: StartRow) -> list[str]:
        return [ratio(pick(row), pick(reference)) for _, pick in CLOCKS]

    summary = [
        ["dlrun to 1st step / import torch", *every(first, torch_row)],
        ["dlrun to 1st step / plain script to 1st step", *every(first, plain)],
        ["dlrun whole 1-batch run / import torch", *every(whole, torch_row)],
        ["dlrun whole run / the same ended when run() returns", *every(whole, no_teardown)],
    ]
    table = [
        [row.label, f"{row.median:.2f}", f"{row.cpu_median:.2f}", *both(row, torch_row), *both(row, plain)]
        for row in rows.values()
    ]
    shown = [[name, f"{seconds:.2f}", ratio(seconds, first.median), brought] for name, seconds, brought in imports[:8]]
    return [
        Report(
            f"Start-up: ratios (subprocesses, medians of {reps})",
            ["ratio", *(clock for clock, _ in CLOCKS)],
            summary,
            f"dlrun runs as: {DLRUN_COMMAND}; its 1st step is timed by a callback (see README). "
            f"From its 1st step to its exit dlrun takes a further {paired(whole, first):.2f} s, and "
            f"{paired(whole, no_teardown):.2f} s pass between run() returning and the process ending "
            "(wall, medians of paired differences).",
        ),
        Report(
            "Start-up: each command (spawn to exit unless said)",
            ["command", "wall s", "CPU s", "/ import torch", "(CPU)", "/ plain 1st step", "(CPU)"],
            table,
        ),
        Report(
            "Start-up: importing dlrun's modules (one whole run)",
            ["module", "wall s", "/ dlrun to 1st step (wall)", "brought in (most modules first)"],
            shown,
            "The time of each dlrun module's import (python -X importtime), less the dlrun modules it imports "
            "itself; modules "
            "imported by hydra's instantiate count too. Imports made later inside functions (torch._dynamo by the "
            "first optimizer, tensorboard by the TensorBoard callback) are not in this table.",
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
            f"batch {result.batch_size}; median of epochs 2..{result.epochs - 1} (epoch 1 compiles).",
        )
    ]


def print_reports(console: Console, reports: list[Report]) -> None:
    for report in reports:
        table = Table(
            title=escape(report.title),
            title_justify="left",
            caption=escape(report.note) if report.note else None,
            caption_justify="left",
            min_width=min(console.width, 100),
        )
        for index, name in enumerate(report.header):
            table.add_column(name, justify="left" if index == 0 or name in TEXT_COLUMNS else "right")
        for row in report.rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)


def markdown(reports: list[Report]) -> str:
    parts = []
    for report in reports:
        parts += [f"### {report.title}", ""]
        aligns = ["---" if i == 0 or name in TEXT_COLUMNS else "--:" for i, name in enumerate(report.header)]
        parts.append("| " + " | ".join(report.header) + " |")
        parts.append("|" + "|".join(aligns) + "|")
        parts += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in report.rows]
        parts += ["", report.note, ""] if report.note else [""]
    return "\n".join(parts)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: on a machine of N cores, near N or above means busy."""
    return ", ".join(f"{load:.1f}" for load in os.getloadavg())


def write_results(reports: list[Report], args: argparse.Namespace, elapsed: float, load_before: str) -> None:
    lines = [
        "# dlrun benchmark results",
        "",
        f"`python benchmarks/bench_train.py {' '.join(sys.argv[1:])}`, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, took {elapsed:.0f} s "
        f"({args.epochs} epochs, {args.rounds} rounds, {args.startup_reps} start-up repetitions).",
        "",
        *(f"- {line}" for line in machine()),
        f"- load average (1, 5, 15 min) before: {load_before}; after: {load_average()}",
        "",
        "Each summary gives ratios of medians (wall, then CPU time) and of best wall times; how each figure is "
        "measured: [README.md](README.md).",
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
    began, load_before = time.perf_counter(), load_average()
    torch.set_num_threads(args.threads)
    register_schemas()
    console = Console(log_path=False) if sys.stdout.isatty() else Console(log_path=False, width=120)
    skip = set(filter(None, args.skip.split(",")))
    say = console.log
    for line in [*machine(), f"load average (1, 5, 15 min): {load_before}"]:
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
            size = {"samples": 2048, "epochs": 3} if args.quick else {"samples": 25600, "epochs": 5}
            result = bench_gpu(torch.device("cuda"), batch_size=256, **size)
        else:
            say("no GPU: skipped")
        reports += gpu_reports(result)
    print_reports(console, reports)
    if args.write:
        write_results(reports, args, time.perf_counter() - began, load_before)
        console.print(f"wrote {RESULTS}")
    console.print(f"took {time.perf_counter() - began:.0f} s", style="dim")


if __name__ == "__main__":
    main()

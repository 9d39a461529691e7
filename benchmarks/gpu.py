"""Section 3: ResNet-18 images/s with bf16, channels_last and torch.compile, dlrun's trainer against plain PyTorch."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from report import Report, ratio
from torch import nn

from dlrun.callbacks.base import Callback
from dlrun.config import trainer_defaults
from dlrun.data.module import DataModule
from dlrun.data.spec import DataSpec
from dlrun.trainer import Trainer


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


def gpu_section(quick: bool, say: Callable[[str], None]) -> list[Report]:
    """The section's tables: measured on the first CUDA GPU, or a line saying it was skipped without one."""
    if not torch.cuda.is_available():
        say("no GPU: skipped")
        return gpu_reports(None)
    size = {"samples": 2048, "epochs": 3} if quick else {"samples": 25600, "epochs": 5}
    return gpu_reports(bench_gpu(torch.device("cuda"), batch_size=256, **size))

"""The hand-written PyTorch loops that dlrun's trainer is measured against, timed as dlrun's fit() is (section 1)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlrun import build
from dlrun.data.module import DataModule
from dlrun.run import seed_everything


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
    """One timed training run."""

    seconds: float  # wall
    cpu_seconds: float
    val_loss: float  # after the last epoch: a check that the variants did the same work
    epochs: int


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

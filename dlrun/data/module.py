"""The splits of one dataset as tensors, and their batches.

Whole splits live as tensors (on the training device once `to` is called) and are batched by
indexing with a seeded permutation: no per-sample Python. With num_workers > 0 the batches come
from a torch DataLoader instead.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

SPLITS = ("train", "val", "test")


@dataclass
class DataModule:
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    batch_size: int
    num_workers: int = 0
    shuffle_seed: int = 0  # the training order of epoch e is a permutation seeded with shuffle_seed + e
    input_mean: Tensor | None = None  # the standardisation applied to the inputs, for new inputs at prediction
    input_std: Tensor | None = None
    target_mean: Tensor | None = None  # regression: targets are standardised, these undo it
    target_std: Tensor | None = None
    class_names: list[str] = field(default_factory=list)

    def preprocessing(self) -> dict:
        """What turns a raw input into a model input, and an output back into a label: kept in checkpoints."""
        return {
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "class_names": list(self.class_names),
        }

    def to(self, device: torch.device) -> "DataModule":
        """Move the splits to the device once; the DataLoader path copies each batch instead."""
        if self.num_workers == 0:
            for split in SPLITS:
                setattr(self, split, tuple(t.to(device) for t in getattr(self, split)))
        return self

    def size(self, split: str) -> int:
        return len(getattr(self, split)[1])

    def num_batches(self, split: str) -> int:
        return math.ceil(self.size(split) / self.batch_size)

    def batches(self, split: str, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of a split: shuffled by epoch for train, in order for val and test."""
        inputs, targets = getattr(self, split)
        if split == "train":
            generator = torch.Generator().manual_seed(self.shuffle_seed + epoch)
            order = torch.randperm(len(targets), generator=generator)
        else:
            order = torch.arange(len(targets))
        if self.num_workers:
            loader = DataLoader(
                TensorDataset(inputs, targets),
                batch_size=self.batch_size,
                sampler=order.tolist(),
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
            )
            yield from loader
            return
        order = order.to(targets.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield inputs[index], targets[index]

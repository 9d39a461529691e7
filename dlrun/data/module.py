"""The splits of one dataset as tensors, and their batches.

Whole splits live as tensors (on the training device once `to` is called) and are batched by
indexing with a seeded permutation: no per-sample Python. With num_workers > 0 the batches come
from a torch DataLoader instead. Image datasets may add a train and an eval transform (dlrun/data/transforms.py),
applied to whole batches; without them a batch is the indexed tensors and nothing more.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

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
    class_names: list[str] = field(default_factory=list)  # classes; a text dataset's vocabulary, one per character
    train_transform: Callable[[Tensor], Tensor] | None = None  # resize + random augmentation of training batches
    eval_transform: Callable[[Tensor], Tensor] | None = None  # resize of val and test batches
    resize: list[int] | None = None  # [height, width] the transforms resize images to, for new inputs at prediction
    rank: int = 0  # under torchrun: this process reads its own shard of every split (see shard)
    world_size: int = 1

    def preprocessing(self) -> dict:
        """What turns a raw input into a model input, and an output back into a label: kept in checkpoints."""
        return {
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "class_names": list(self.class_names),
            "resize": None if self.resize is None else list(self.resize),
        }

    def to(self, device: torch.device) -> "DataModule":
        """Move the splits to the device once; the DataLoader path copies each batch instead."""
        if self.num_workers == 0:
            for split in SPLITS:
                setattr(self, split, tuple(t.to(device) for t in getattr(self, split)))
        return self

    @property
    def in_shape(self) -> list[int]:
        """The shape of one input."""
        return list(self.train[0].shape[1:])

    def shard(self, rank: int, world_size: int) -> "DataModule":
        """Read only process `rank`'s share of each split: train as a DistributedSampler with drop_last shards it
        (one permutation per epoch, cut to a multiple of world_size, every world_size-th sample), val and test
        every world_size-th sample from `rank` on, each sample once (the trainer gathers them back in order)."""
        self.rank, self.world_size = rank, world_size
        return self

    def size(self, split: str) -> int:
        """Samples of the split: all of them, not this process's share."""
        return len(getattr(self, split)[1])

    def num_batches(self, split: str) -> int:
        """This process's batches of the split."""
        return math.ceil(len(self._order(split, epoch=0)) / self.batch_size)

    def batches(self, split: str, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of a split: shuffled by epoch for train, in order for val and test."""
        transform = self.train_transform if split == "train" else self.eval_transform
        batches = self._indexed_batches(split, epoch)
        if transform is None:
            yield from batches
            return
        for inputs, targets in batches:
            yield transform(inputs), targets

    def _indexed_batches(self, split: str, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        inputs, targets = getattr(self, split)
        if self.num_workers:
            dataset = TensorDataset(inputs, targets)
            loader = DataLoader(
                dataset,
                batch_size=self.batch_size,
                sampler=self._sampler(dataset, split, epoch),
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
                generator=torch.Generator().manual_seed(self.shuffle_seed + epoch),  # leaves the global RNG alone
            )
            yield from loader
            return
        order = self._order(split, epoch).to(targets.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield inputs[index], targets[index]

    def _order(self, split: str, epoch: int) -> Tensor:
        """This process's sample indices in batch order: the in-memory twin of _sampler."""
        count = self.size(split)
        if split != "train":
            return torch.arange(self.rank, count, self.world_size)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.shuffle_seed + epoch))
        return order[: count - count % self.world_size][self.rank :: self.world_size]

    def _sampler(self, dataset: TensorDataset, split: str, epoch: int):
        if split != "train":
            return self._order(split, epoch).tolist()
        sampler = DistributedSampler(
            dataset, num_replicas=self.world_size, rank=self.rank, seed=self.shuffle_seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        return sampler

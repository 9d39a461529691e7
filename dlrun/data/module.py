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

from dlrun.errors import ConfigError

SPLITS = ("train", "val", "test")
DEVICE_SHARE = 0.5  # the splits go to a GPU when they take at most this share of its free memory (fits_on)


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
    persistent_workers: bool = False  # DataLoader path: keep the worker processes from epoch to epoch
    prefetch_factor: int | None = None  # DataLoader path: batches each worker loads ahead (None: torch's default)
    _loaders: dict[str, DataLoader] = field(default_factory=dict, init=False, repr=False)  # made on first use
    resident_on: torch.device | None = field(default=None, init=False)  # where `to` put the splits, their batches

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
            self.resident_on = device
        return self

    def fits_on(self, device: torch.device) -> bool:
        """Whether the splits may live on the device: on a GPU, at most DEVICE_SHARE of its free memory (the model,
        its activations and the optimizer need the rest); host memory holds them already."""
        if device.type != "cuda":
            return True
        free, _total = torch.cuda.mem_get_info(device)
        elsewhere = [tensor for split in SPLITS for tensor in getattr(self, split) if tensor.device != device]
        return sum(tensor.nbytes for tensor in elsewhere) <= DEVICE_SHARE * free  # those there are not in `free`

    @property
    def in_shape(self) -> list[int]:
        """The shape of one input."""
        return list(self.train[0].shape[1:])

    def shard(self, rank: int, world_size: int) -> "DataModule":
        """Read only process `rank`'s share of each split: train as a DistributedSampler with drop_last shards it
        (one permutation per epoch, cut to a multiple of world_size, every world_size-th sample), val and test
        every world_size-th sample from `rank` on, each sample once (the trainer gathers them back in order)."""
        smallest = min(SPLITS, key=self.size)
        if self.size(smallest) < world_size:
            fewer = "start fewer processes (torchrun --nproc_per_node) or " if world_size > 1 else ""
            raise ConfigError(
                f"dataset: the {smallest} split has {self.size(smallest)} samples, and each of the job's {world_size} "
                f"processes needs one; {fewer}give the {smallest} split more samples (dataset.val_fraction, "
                "dataset.test_fraction)"
            )
        if (rank, world_size) != (self.rank, self.world_size):
            self.rank, self.world_size = rank, world_size
            self._loaders.clear()
        return self

    def size(self, split: str) -> int:
        """Samples of the split: all of them, not this process's share."""
        return len(getattr(self, split)[1])

    def num_batches(self, split: str) -> int:
        """This process's batches of the split."""
        return math.ceil(self._share(split) / self.batch_size)

    def _share(self, split: str) -> int:
        """This process's samples of the split (see shard), counted without drawing the order."""
        count = self.size(split)
        if split == "train":
            return count // self.world_size
        return len(range(self.rank, count, self.world_size))

    def batches(self, split: str, epoch: int = 0, *, whole: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of a split: shuffled by epoch for train, in order for val and test; this process's share of
        them. whole=True: every sample of the split in order on every process, as evaluation sees it."""
        transform = self.train_transform if split == "train" and not whole else self.eval_transform
        batches = self._indexed_batches(split, epoch, whole)
        if transform is None:
            yield from batches
            return
        for inputs, targets in batches:
            yield transform(inputs), targets

    def _indexed_batches(self, split: str, epoch: int, whole: bool) -> Iterator[tuple[Tensor, Tensor]]:
        inputs, targets = getattr(self, split)
        if self.num_workers and not whole:
            loader = self._loader(split)
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(epoch)
            yield from loader
            return
        if split == "train" and not whole:  # a seeded permutation; each batch gathered by one index_select
            for index in self._order(split, epoch).to(targets.device).split(self.batch_size):
                yield inputs.index_select(0, index), targets.index_select(0, index)
            return
        if not whole:  # this process's share of val or test, the samples _order lists
            inputs, targets = inputs[self.rank :: self.world_size], targets[self.rank :: self.world_size]
        for start in range(0, len(targets), self.batch_size):  # in order; copies, so that nothing can change the split
            yield inputs[start : start + self.batch_size].clone(), targets[start : start + self.batch_size].clone()

    def _order(self, split: str, epoch: int) -> Tensor:
        """This process's sample indices in batch order: the in-memory twin of _loader's samplers."""
        count = self.size(split)
        if split != "train":
            return torch.arange(self.rank, count, self.world_size)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.shuffle_seed + epoch))
        return order[: count - count % self.world_size][self.rank :: self.world_size]

    def _loader(self, split: str) -> DataLoader:
        """The split's DataLoader, made once: its workers can then persist, and the train sampler's epoch is set."""
        if split not in self._loaders:
            dataset = TensorDataset(*getattr(self, split))
            if split == "train":
                sampler = DistributedSampler(
                    dataset, num_replicas=self.world_size, rank=self.rank, seed=self.shuffle_seed, drop_last=True
                )
            else:
                sampler = self._order(split, epoch=0).tolist()
            self._loaders[split] = DataLoader(
                dataset,
                batch_size=self.batch_size,
                sampler=sampler,
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
                persistent_workers=self.persistent_workers,
                prefetch_factor=self.prefetch_factor,
                generator=torch.Generator().manual_seed(self.shuffle_seed),  # leaves the global RNG alone
            )
        return self._loaders[split]

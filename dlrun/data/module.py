"""The splits of one dataset, in memory or streamed, and their batches.

In memory a split is a pair of tensors (on the training device once `to` is called), batched by indexing with a
seeded permutation: no per-sample Python. Streamed, a split is a map-style torch Dataset that reads and decodes one
sample at a time (dlrun/data/streaming.py), batched by a torch DataLoader whose workers do the reading; with
num_workers > 0 the in-memory splits are batched by a DataLoader too. Both take the same sample order, so a
resumed epoch skips the indices already trained on and torchrun's ranks read disjoint shares. Image datasets may add
a train and an eval transform (dlrun/data/transforms.py), applied to whole batches, and mix the training batches
(Mixup, CutMix: dlrun/data/mixing.py), whose targets are then class probabilities.

A dataset builder returns Splits: the three splits, their DataSpec (dlrun/data/spec.py) and what turns a raw input
into a model input. dlrun/build.py adds the batching (batch size, workers, prefetch, shuffling) as a DataModule.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate

from dlrun.data.spec import DataSpec
from dlrun.data.streaming import Unreadable, report_unreadable, to_unit
from dlrun.errors import ConfigError

SPLITS = ("train", "val", "test")
DEVICE_SHARE = 0.5  # the splits go to a GPU when they take at most this share of its free memory (fits_on)
Split = tuple[Tensor, Tensor] | Dataset  # in memory: (inputs, targets); streamed: a Dataset of (input, target)


@dataclass
class Splits:
    """What a dataset builder returns: the train, val and test splits, what the model and task need to know of them
    (spec), and how a raw input becomes a model input."""

    train: Split
    val: Split
    test: Split
    spec: DataSpec
    input_mean: Tensor | None = None  # the standardisation applied to the inputs, for new inputs at prediction
    input_std: Tensor | None = None
    train_transform: Callable[[Tensor], Tensor] | None = None  # resize + random augmentation of training batches
    eval_transform: Callable[[Tensor], Tensor] | None = None  # resize of val and test batches
    train_mix: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None  # Mixup/CutMix (mixing.py): soft labels
    resize: list[int] | None = None  # [height, width] the transforms resize images to, for new inputs at prediction
    unreadable: dict[str, str] = field(default_factory=dict)  # streamed: samples skipped, by name, with the reason

    @property
    def streamed(self) -> bool:
        """Whether the splits are read sample by sample (Datasets) rather than held as tensors."""
        return not isinstance(self.train, tuple)

    def size(self, split: str) -> int:
        """Samples of the split: all of them, not this process's share."""
        data = getattr(self, split)
        return len(data[1]) if isinstance(data, tuple) else len(data)


@dataclass
class DataModule(Splits):
    """The splits with their batching: what the trainer and the tasks read batches from."""

    batch_size: int = 64  # samples per training step
    num_workers: int = 0  # > 0: batches come from a torch DataLoader with this many worker processes
    persistent_workers: bool = False  # DataLoader path: keep the worker processes from epoch to epoch
    prefetch_factor: int | None = None  # DataLoader path: batches each worker loads ahead (None: torch's default)
    shuffle_seed: int = 0  # the training order of epoch e is a permutation seeded with shuffle_seed + e
    rank: int = 0  # under torchrun: this process reads its own shard of every split (see shard)
    world_size: int = 1
    _loaders: dict[str, DataLoader] = field(default_factory=dict, init=False, repr=False)  # made on first use
    resident_on: torch.device | None = field(default=None, init=False)  # where `to` put the splits, their batches

    @classmethod
    def batching(cls, splits: Splits, **settings) -> "DataModule":
        """splits batched by settings (batch_size, num_workers, persistent_workers, prefetch_factor, shuffle_seed)."""
        return cls(**{item.name: getattr(splits, item.name) for item in fields(Splits)}, **settings)

    def preprocessing(self) -> dict:
        """What turns a raw input into a model input, and an output back into a label: kept in checkpoints."""
        return {
            **self.spec.as_dict(),
            "input_mean": self.input_mean,
            "input_std": self.input_std,
            "resize": None if self.resize is None else list(self.resize),
        }

    def require_in_memory(self, reader: str) -> None:
        """Refuse streamed splits to a reader of whole splits (a task that measures its training set, say)."""
        if self.streamed:
            raise ConfigError(
                f"dataset.storage: {reader} reads whole splits as tensors, and this dataset is streamed; type "
                "dataset.storage=memory (the data must then fit in memory), or task=supervised"
            )

    def to(self, device: torch.device) -> "DataModule":
        """Move the splits to the device once; the DataLoader path copies each batch instead."""
        if self.num_workers == 0 and not self.streamed:
            for split in SPLITS:
                setattr(self, split, tuple(t.to(device) for t in getattr(self, split)))
            self.resident_on = device
        return self

    def fits_on(self, device: torch.device) -> bool:
        """Whether the splits may live on the device: on a GPU, at most DEVICE_SHARE of its free memory (the model,
        its activations and the optimizer need the rest); host memory holds them already."""
        if self.streamed:
            return False
        if device.type != "cuda":
            return True
        free, _total = torch.cuda.mem_get_info(device)
        elsewhere = [tensor for split in SPLITS for tensor in getattr(self, split) if tensor.device != device]
        return sum(tensor.nbytes for tensor in elsewhere) <= DEVICE_SHARE * free  # those there are not in `free`

    def shard(self, rank: int, world_size: int) -> "DataModule":
        """Read only process `rank`'s share of each split: train as DistributedSampler with drop_last shards it
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

    def num_batches(self, split: str) -> int:
        """This process's batches of the split."""
        return math.ceil(self._share(split) / self.batch_size)

    def _share(self, split: str) -> int:
        """This process's samples of the split (see shard), counted without drawing the order."""
        count = self.size(split)
        if split != "train":
            return len(range(self.rank, count, self.world_size))
        share = count // self.world_size
        lone = share > 1 and self.batch_size > 1 and share % self.batch_size == 1  # batch norm cannot train on one
        return share - 1 if lone else share  # that last sample is left out of the epoch (the next shuffle takes it in)

    def batches(
        self, split: str, epoch: int = 0, *, whole: bool = False, start: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of a split: shuffled by epoch for train, in order for val and test; this process's share of
        them. whole=True: every sample of the split in order on every process, as evaluation sees it. start: the
        batches already done (a resumed epoch), skipped without being read."""
        training = split == "train" and not whole
        transform = self.train_transform if training else self.eval_transform
        mix = self.train_mix if training else None
        if self.streamed or self.num_workers:
            batches = self._loaded_batches(split, epoch, whole, start)
        else:
            batches = self._indexed_batches(split, epoch, whole, start)
        if transform is None and mix is None:
            yield from batches
            return
        for inputs, targets in batches:
            inputs = inputs if transform is None else transform(inputs)
            yield (inputs, targets) if mix is None else mix(inputs, targets)

    def _indexed_batches(self, split: str, epoch: int, whole: bool, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        inputs, targets = getattr(self, split)
        if split == "train" and not whole:  # a seeded permutation; each batch gathered by one index_select
            order = self._order(split, epoch)[start * self.batch_size :]
            for index in order.to(targets.device).split(self.batch_size):
                yield inputs.index_select(0, index), targets.index_select(0, index)
            return
        if not whole:  # this process's share of val or test, the samples _order lists
            inputs, targets = inputs[self.rank :: self.world_size], targets[self.rank :: self.world_size]
        for begin in range(start * self.batch_size, len(targets), self.batch_size):  # copies: the split stays as it is
            yield inputs[begin : begin + self.batch_size].clone(), targets[begin : begin + self.batch_size].clone()

    def _loaded_batches(self, split: str, epoch: int, whole: bool, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        loader = self._loader(split)
        loader.batch_sampler.set(epoch=epoch, whole=whole, start=start)
        finish = getattr(loader.dataset, "finish", None)  # streamed images come as pixels, made inputs here
        for batch, unreadable in loader:
            for sample in unreadable:
                report_unreadable(self.unreadable, sample)
            if len(batch[1]):
                yield batch if finish is None else [finish(batch[0]), batch[1]]

    def _order(self, split: str, epoch: int) -> Tensor:
        """This process's sample indices in batch order, for both the indexed and the DataLoader path."""
        count = self.size(split)
        if split != "train":
            return torch.arange(self.rank, count, self.world_size)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.shuffle_seed + epoch))
        return order[: count - count % self.world_size][self.rank :: self.world_size][: self._share(split)]

    def _loader(self, split: str) -> DataLoader:
        """The split's DataLoader, made once: its workers can then persist from epoch to epoch."""
        if split not in self._loaders:
            data = getattr(self, split)
            dataset = TensorDataset(*data) if isinstance(data, tuple) else data
            self._loaders[split] = DataLoader(
                dataset,
                batch_sampler=EpochBatches(self, split, keyed=not isinstance(data, tuple)),
                collate_fn=collate,
                num_workers=self.num_workers,
                pin_memory=torch.cuda.is_available(),
                persistent_workers=self.persistent_workers,
                prefetch_factor=self.prefetch_factor,
                generator=torch.Generator().manual_seed(self.shuffle_seed),  # leaves the global RNG alone
            )
        return self._loaders[split]


class EpochBatches(Sampler[list[int]]):
    """The sample indices of a split's batches in one epoch, as DataModule._order lists them: `set` picks the epoch,
    whole (every sample in order) and the batches to skip. Keyed: each index carries its epoch as
    epoch * size + index, so that a streamed sample's random draws are seeded by both (streaming.ImageSamples)."""

    def __init__(self, data: DataModule, split: str, *, keyed: bool):
        self.data, self.split, self.keyed = data, split, keyed
        self.indices = torch.empty(0, dtype=torch.long)

    def set(self, *, epoch: int, whole: bool, start: int) -> None:
        """The epoch's indices from batch `start` on, drawn once (iterating and len both read them)."""
        data = self.data
        indices = torch.arange(data.size(self.split)) if whole else data._order(self.split, epoch)
        indices = indices[start * data.batch_size :]
        self.indices = indices + epoch * data.size(self.split) if self.keyed else indices

    def __iter__(self) -> Iterator[list[int]]:
        yield from (index.tolist() for index in self.indices.split(self.data.batch_size))

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.data.batch_size)


def collate(samples: list) -> tuple[list[Tensor], list[Unreadable]]:
    """A batch of the samples that could be read, and the ones that could not (streamed data skips them)."""
    unreadable = [sample for sample in samples if isinstance(sample, Unreadable)]
    readable = [sample for sample in samples if not isinstance(sample, Unreadable)]
    dtypes = {sample[0].dtype for sample in readable if isinstance(sample[0], Tensor)}
    if len(dtypes) > 1:  # uint8 pixels beside floats a transform made: all as floats in [0, 1]
        readable = [(to_unit(sample[0]), *sample[1:]) for sample in readable]
    return (default_collate(readable) if readable else [torch.empty(0), torch.empty(0)]), unreadable

"""torch.distributed as torchrun starts it: which process this is, one process group per process, reused."""

import atexit
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process among all processes
    local_rank: int = 0  # this process among those on its node: its GPU
    size: int = 1  # processes in the job

    @classmethod
    def from_env(cls) -> "World":
        """The RANK, LOCAL_RANK and WORLD_SIZE that torchrun sets; one process when they are absent."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            size=int(os.environ.get("WORLD_SIZE", 1)),
        )

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_process_group(device: torch.device) -> None:
    """NCCL between GPUs, gloo on CPUs; once per process (starting and stopping groups per job hangs gloo), and
    destroyed when the process exits: left to the interpreter's finalization, gloo's threads may abort it
    ("terminate called without an active exception")."""
    if not dist.is_initialized():
        if device.type == "cuda":  # NCCL's collectives (broadcast_object_list's too) use the current device
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        sum_across_ranks(values).div_(dist.get_world_size())
    return values


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_shards(shard: torch.Tensor, total: int) -> torch.Tensor:
    """A split's samples back in order on every rank, from shards in which rank r holds samples r, r + size, ...
    (DataModule.shard); `total` is the number of samples in all shards together."""
    if not dist.is_initialized():
        return shard
    size = dist.get_world_size()
    per_rank = math.ceil(total / size)
    padded = shard.new_zeros((per_rank, *shard.shape[1:]))  # all_gather takes equal shapes
    padded[: len(shard)] = shard
    gathered = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(gathered, padded)
    # Row j of rank r is sample j * size + r: interleaving the ranks restores the order; padding falls past total.
    return torch.stack(gathered, dim=1).reshape(per_rank * size, *shard.shape[1:])[:total]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one: ranks agree, so none waits for a step the others skip."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_from_main(value):
    """Rank 0's value on every rank (e.g. its run dir)."""
    if not dist.is_initialized():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]

"""dataset.storage: whether a dataset is held in memory as tensors or streamed from disk sample by sample."""

import psutil

from dlrun.errors import ConfigError

STORAGE = ("auto", "memory", "stream")
MEMORY_SHARE = 0.25  # auto holds a dataset in memory when its tensors take at most this share of the available memory


def in_memory(storage: str, *, nbytes: int, stream_only: str | None = None) -> bool:
    """Whether to hold the data in memory: storage=memory|stream says so; auto does where nbytes fit (MEMORY_SHARE of
    the memory available now). stream_only: why this data can only be streamed (then memory is refused)."""
    if storage not in STORAGE:
        raise ConfigError(f"dataset.storage = {storage}: type one of {', '.join(STORAGE)}")
    if storage == "memory" and stream_only:
        raise ConfigError(f"dataset.storage = memory: {stream_only}; type dataset.storage=stream (or auto)")
    if storage != "auto":
        return storage == "memory"
    return stream_only is None and nbytes <= MEMORY_SHARE * psutil.virtual_memory().available

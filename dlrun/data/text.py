"""Any text file as a character-level language modelling dataset.

The vocabulary is the file's distinct characters (class_names, in sorted order; token i is class_names[i]). The
text is split by position, train first, then val_fraction and test_fraction at the end; each split is cut into
sequences of seq_len characters, each target the same sequence shifted by one character. Without dataset.path it
reads the shipped text: Shakespeare's Macbeth (public domain, dlrun/data/files/).
"""

from collections.abc import Sequence
from pathlib import Path

import torch

from dlrun.data.module import DataModule
from dlrun.errors import ConfigError

FILES = Path(__file__).resolve().parent / "files"
SHIPPED = FILES / "macbeth.txt"


def load(
    *,
    name: str = "text",  # the dataset option, as config messages name it
    path: str | None,
    seq_len: int,
    in_shape: Sequence[int],
    vocab_size: int | str = "auto",
    num_classes: int | str = "auto",
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    batch_size: int = 64,
    num_workers: int = 0,
    shuffle_seed: int = 0,
) -> DataModule:
    if seq_len < 1:
        raise ConfigError(f"dataset.seq_len = {seq_len}: must be at least 1; type dataset.seq_len=128")
    if list(in_shape) != [seq_len]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: sequences are [{seq_len}]; type dataset.in_shape=[{seq_len}]"
        )
    text = read_text(path)
    vocabulary = sorted(set(text))
    for key, value in (("vocab_size", vocab_size), ("num_classes", num_classes)):
        if value != "auto" and value != len(vocabulary):
            raise ConfigError(
                f"dataset.{key} = {value}: the text has {len(vocabulary)} distinct characters; type dataset.{key}=auto"
            )
    index = {character: i for i, character in enumerate(vocabulary)}
    tokens = torch.tensor([index[character] for character in text], dtype=torch.long)
    test_start = len(tokens) - round(len(tokens) * test_fraction)
    val_start = test_start - round(len(tokens) * val_fraction)
    parts = {"train": tokens[:val_start], "val": tokens[val_start:test_start], "test": tokens[test_start:]}
    short = [split for split, part in parts.items() if len(part) < seq_len + 1]
    if short:
        raise ConfigError(
            f"dataset.seq_len = {seq_len}: the {short[0]} part of the text ({len(parts[short[0]])} characters) is "
            f"shorter than one sequence; type a smaller dataset.seq_len, larger fractions, or a longer text"
        )
    return DataModule(
        *(sequences(part, seq_len) for part in parts.values()),
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle_seed=shuffle_seed,
        class_names=vocabulary,
    )


def read_text(path: str | None) -> str:
    file = SHIPPED if path is None else Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"dataset.path = {path}: no such file ({file.resolve()}); type the path of a text file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"dataset.path = {path}: not UTF-8 text ({error}); convert it to UTF-8") from error
    if len(set(text)) < 2:
        raise ConfigError(f"dataset.path = {path}: needs a text of at least two distinct characters")
    return text


def sequences(tokens: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive, non-overlapping (inputs, targets) of seq_len characters, targets one character ahead."""
    count = (len(tokens) - 1) // seq_len
    inputs = tokens[: count * seq_len].reshape(count, seq_len)
    targets = tokens[1 : count * seq_len + 1].reshape(count, seq_len)
    return inputs, targets

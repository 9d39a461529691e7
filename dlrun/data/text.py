"""Any text file as a character-level language modelling dataset.

The vocabulary is the file's distinct characters (class_names, in sorted order; token i is class_names[i]). The
text is split by position, train first, then val_fraction and test_fraction at the end; each split is cut into
sequences of seq_len characters, each target the same sequence shifted by one character. Without dataset.path it
reads the shipped text: Shakespeare's Macbeth (public domain, dlrun/data/files/).

dataset.storage picks where the tokens are (auto: in memory where they take at most 1/4 of the available memory).
In memory the text is read whole and its tokens held as a tensor; streamed, it is tokenised chunk by chunk into a
cached token file (dlrun/data/token_files.py) and each sequence is read from it when a batch needs it, so that a
text of any size trains in bounded memory. Both give the same tokens, sequences and batches.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dlrun.data.module import Splits
from dlrun.data.spec import DataSpec
from dlrun.data.storage import in_memory
from dlrun.data.token_files import (
    FlatFile,
    distinct_code_points,
    encode,
    text_chunks,
    token_file,
    token_lookup,
)
from dlrun.errors import ConfigError

FILES = Path(__file__).resolve().parent / "files"
SHIPPED = FILES / "macbeth.txt"
BYTES_PER_CHARACTER = 16  # in memory: an int64 input and target per character (a file has at most a character a byte)


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
    storage: str = "auto",
) -> Splits:
    if seq_len < 1:
        raise ConfigError(f"dataset.seq_len = {seq_len}: must be at least 1; type dataset.seq_len=128")
    if list(in_shape) != [seq_len]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: sequences are [{seq_len}]; type dataset.in_shape=[{seq_len}]"
        )
    file = text_file(path)
    if in_memory(storage, nbytes=BYTES_PER_CHARACTER * file.stat().st_size):
        tokens, vocabulary = tokens_in_memory(path)
        _check_vocabulary(vocabulary, path, vocab_size=vocab_size, num_classes=num_classes)
        parts = _parts(len(tokens), seq_len, val_fraction, test_fraction)
        splits = [sequences(tokens[start:stop], seq_len) for start, stop in parts]
        return Splits(*splits, spec=DataSpec(in_shape=[seq_len], class_names=vocabulary, tokens=True))
    streamed = token_file(file, f"dataset.path = {path}")
    _check_vocabulary(streamed.vocabulary, path, vocab_size=vocab_size, num_classes=num_classes)
    parts = _parts(len(streamed.tokens), seq_len, val_fraction, test_fraction)
    splits = [TokenSequences(streamed.tokens, start, stop, seq_len) for start, stop in parts]
    return Splits(*splits, spec=DataSpec(in_shape=[seq_len], class_names=streamed.vocabulary, tokens=True))


def text_file(path: str | None) -> Path:
    file = SHIPPED if path is None else Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"dataset.path = {path}: no such file ({file.resolve()}); type the path of a text file")
    return file


def read_text(path: str | None) -> str:
    try:
        return text_file(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"dataset.path = {path}: not UTF-8 text ({error}); convert it to UTF-8") from error


def tokens_in_memory(path: str | None) -> tuple[Tensor, list[str]]:
    """The text's tokens (int64) and its vocabulary, encoded as the streamed path encodes them."""
    text = read_text(path)
    codes = distinct_code_points(text_chunks(text))
    encoded = list(encode(text_chunks(text), token_lookup(codes, np.int64)))
    tokens = np.concatenate(encoded) if encoded else np.zeros(0, np.int64)  # an empty text: refused by its vocabulary
    return torch.from_numpy(tokens), [chr(code) for code in codes.tolist()]


def _check_vocabulary(vocabulary: list[str], path: str | None, **settings: int | str) -> None:
    if len(vocabulary) < 2:
        raise ConfigError(f"dataset.path = {path}: needs a text of at least two distinct characters")
    for key, value in settings.items():
        if value != "auto" and value != len(vocabulary):
            raise ConfigError(
                f"dataset.{key} = {value}: the text has {len(vocabulary)} distinct characters; type dataset.{key}=auto"
            )


def _parts(length: int, seq_len: int, val_fraction: float, test_fraction: float) -> list[tuple[int, int]]:
    """(start, stop) of the train, val and test parts of a text of `length` tokens."""
    test_start = length - round(length * test_fraction)
    val_start = test_start - round(length * val_fraction)
    parts = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, length)}
    for split, (start, stop) in parts.items():
        if stop - start < seq_len + 1:
            raise ConfigError(
                f"dataset.seq_len = {seq_len}: the {split} part of the text ({stop - start} characters) is "
                f"shorter than one sequence; type a smaller dataset.seq_len, larger fractions, or a longer text"
            )
    return list(parts.values())


def sequences(tokens: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
    """Consecutive, non-overlapping (inputs, targets) of seq_len characters, targets one character ahead."""
    count = (len(tokens) - 1) // seq_len
    inputs = tokens[: count * seq_len].reshape(count, seq_len)
    targets = tokens[1 : count * seq_len + 1].reshape(count, seq_len)
    return inputs, targets


class TokenSequences(Dataset):
    """The sequences of tokens start .. stop - 1 of a token file, read on access: item i is `sequences` row i."""

    def __init__(self, tokens: FlatFile, start: int, stop: int, seq_len: int):
        self.tokens, self.start, self.seq_len = tokens, start, seq_len
        self.count = (stop - start - 1) // seq_len

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: int) -> tuple[Tensor, Tensor]:
        begin = self.start + key % self.count * self.seq_len  # keys carry the epoch (module.EpochBatches)
        window = torch.from_numpy(self.tokens.read(begin, self.seq_len + 1).astype(np.int64))
        return window[:-1], window[1:]

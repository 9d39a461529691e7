"""Texts and series larger than memory, converted once into flat files of numbers and read back by position.

A flat file is raw little-endian numbers of one dtype, nothing else: a text's tokens as uint8 (a vocabulary of at
most 256 characters) or uint16 (at most 65536), beside vocabulary.json (the characters, token i is entry i); a
series' values as float64. They live in a cache outside the user's data folder,
${XDG_CACHE_HOME:-~/.cache}/dlrun/<kind>/<sha256 of the source's resolved path, size and mtime_ns>/, so that an
edited source gets a new folder; a folder is written under a temporary name and renamed whole, so that one that is
there is complete and is reused. A text is tokenised in two passes of CHUNK_CHARACTERS each (its characters, then
their tokens), never whole. Samples are read by seek and read into small buffers rather than memory-mapped: mapped
pages that were read count in a process's resident memory, which would then grow with the corpus.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrun.errors import ConfigError

CHUNK_CHARACTERS = 1 << 20  # characters decoded and encoded at a time (a chunk's temporaries take about 15 MB)
CODE_POINTS = 0x110000  # every Unicode code point
TOKEN_DTYPES = (np.dtype("<u1"), np.dtype("<u2"))  # the narrowest that holds the vocabulary is used
TOKENS, VOCABULARY = "tokens.bin", "vocabulary.json"
log = logging.getLogger("dlrun.data")


class FlatFile:
    """A flat file read by position. The file is opened on the first read in each process (a DataLoader worker,
    forked or spawned, opens its own; pickling carries only the path)."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.length = self.path.stat().st_size // self.dtype.itemsize
        self._handle, self._pid = None, None

    def __len__(self) -> int:
        return self.length

    def read(self, start: int, count: int) -> np.ndarray:
        """Values start .. start + count - 1 (read-only)."""
        if self._pid != os.getpid():  # a forked worker must not share the parent's file position
            self._handle, self._pid = open(self.path, "rb"), os.getpid()  # noqa: SIM115 (open for the object's life)
        self._handle.seek(start * self.dtype.itemsize)
        return np.frombuffer(self._handle.read(count * self.dtype.itemsize), self.dtype)

    def chunks(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        """Values start .. stop - 1, size at a time."""
        for begin in range(start, stop, size):
            yield self.read(begin, min(size, stop - begin))

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_handle": None, "_pid": None}


def cache_dir(kind: str, source: Path, *more: str) -> Path:
    """The cache folder of what `source` converts to; `more` (a column name, say) tells conversions apart."""
    stat = source.stat()
    identity = "\0".join([str(source.resolve()), str(stat.st_size), str(stat.st_mtime_ns), *more])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "dlrun" / kind / hashlib.sha256(identity.encode()).hexdigest()


def cached(directory: Path, write: Callable[[Path], None]) -> Path:
    """directory, made by write(a temporary folder beside it) unless it is there already."""
    if directory.is_dir():
        return directory
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f"{directory.name}.partial-"))
    except OSError as error:
        raise ConfigError(
            f"dataset.storage: streaming converts the data into {directory.parent}, which cannot be written "
            f"({error}); set XDG_CACHE_HOME to a writable folder with room for it, or type dataset.storage=memory"
        ) from error
    try:
        write(temporary)
        os.rename(temporary, directory)
    except OSError:
        if not directory.is_dir():  # else another process renamed its copy into place first
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return directory


@dataclass(frozen=True)
class TokenFile:
    """A text's tokens in a flat file, and its vocabulary (sorted characters; token i is vocabulary[i])."""

    tokens: FlatFile
    vocabulary: list[str]


def token_file(source: Path, where: str) -> TokenFile:
    """The text file's tokens, from the cache or tokenised into it; where (`dataset.path = ...`) starts errors."""
    directory = cached(cache_dir("tokens", source), lambda folder: write_tokens(source, folder, where))
    vocabulary = json.loads((directory / VOCABULARY).read_text(encoding="utf-8"))
    return TokenFile(FlatFile(directory / TOKENS, token_dtype(len(vocabulary), where)), vocabulary)


def write_tokens(source: Path, folder: Path, where: str) -> None:
    log.info("tokenising %s into %s (once: later runs read it from there)", source, folder)
    codes = distinct_code_points(file_chunks(source, where))
    lookup = token_lookup(codes, token_dtype(len(codes), where))
    with open(folder / TOKENS, "wb") as handle:
        for tokens in encode(file_chunks(source, where), lookup):
            handle.write(tokens.tobytes())
    vocabulary = [chr(code) for code in codes.tolist()]
    (folder / VOCABULARY).write_text(json.dumps(vocabulary), encoding="utf-8")


def file_chunks(source: Path, where: str) -> Iterator[str]:
    """The text of a UTF-8 file, CHUNK_CHARACTERS at a time, with universal newlines (as Path.read_text reads it)."""
    try:
        with open(source, encoding="utf-8") as handle:
            yield from iter(lambda: handle.read(CHUNK_CHARACTERS), "")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text ({error}); convert it to UTF-8") from error


def text_chunks(text: str) -> Iterator[str]:
    """A text in memory, CHUNK_CHARACTERS at a time."""
    return (text[begin : begin + CHUNK_CHARACTERS] for begin in range(0, len(text), CHUNK_CHARACTERS))


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), np.dtype("<u4"))


def distinct_code_points(chunks: Iterable[str]) -> np.ndarray:
    """The code points that occur, ascending: the order of sorted(set(text))."""
    seen = np.zeros(CODE_POINTS, dtype=bool)
    for chunk in chunks:
        seen[code_points(chunk)] = True
    return np.flatnonzero(seen)


def token_dtype(vocabulary_size: int, where: str) -> np.dtype:
    fitting = [dtype for dtype in TOKEN_DTYPES if vocabulary_size <= np.iinfo(dtype).max + 1]
    if not fitting:
        raise ConfigError(
            f"{where}: the text has {vocabulary_size} distinct characters, more than the "
            f"{np.iinfo(TOKEN_DTYPES[-1]).max + 1} that streamed tokens hold; type dataset.storage=memory"
        )
    return fitting[0]


def token_lookup(codes: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The token of every code point (those of `codes`, ascending, are 0, 1, ...)."""
    lookup = np.zeros(CODE_POINTS, dtype=dtype)
    lookup[codes] = np.arange(len(codes))
    return lookup


def encode(chunks: Iterable[str], lookup: np.ndarray) -> Iterator[np.ndarray]:
    """Each chunk's tokens."""
    for chunk in chunks:
        yield lookup[code_points(chunk)]

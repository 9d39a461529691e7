"""One column of a CSV file as a time series: sliding windows of `window` values, each to forecast the next one.

The rows are read in file order (oldest first). The series is split in time: the first part trains, the next
val_fraction validates and the last test_fraction tests (by the time of the value forecast; a window may reach back
into the part before). Values are standardised with the training part's mean and std; the task reports errors in
the series' own units. Without dataset.path it reads the shipped monthly sunspot numbers (dlrun/data/files/).

dataset.storage picks where the windows are (auto: in memory where they take at most 1/4 of the available memory,
counted from the file's size and the length of its first lines). In memory the series is held whole and cut into
window tensors; streamed, the column is read row by row into a cached flat file of float64 values
(dlrun/data/token_files.py) and each window is read from it when a batch needs it. Both give the same batches.
"""

import csv
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dlrun.data.module import Splits
from dlrun.data.spec import DataSpec
from dlrun.data.storage import in_memory
from dlrun.data.tabular import SNIFF_BYTES
from dlrun.data.token_files import FlatFile, cache_dir, cached
from dlrun.errors import ConfigError

FILES = Path(__file__).resolve().parent / "files"
SHIPPED = FILES / "sunspots.csv"  # monthly mean sunspot numbers 1749-2008, NOAA NGDC (public domain)
VALUES = "values.bin"
VALUE_DTYPE = np.dtype("<f8")  # as read: standardised in float64, then float32 like the in-memory windows
CHUNK_VALUES = 1 << 18  # values parsed, written and summed at a time (as Python floats while parsed: 8 MB)
BYTES_PER_STEP = 4  # in memory: a float32 for each value of each window
BYTES_PER_ROW = 24  # in memory, besides the windows: the series as float64, scaled in float64, as float32, the target


def load(
    *,
    name: str = "timeseries",  # the dataset option, as config messages name it
    path: str | None,
    column: str,
    window: int,
    in_shape: Sequence[int],
    num_classes: None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    normalize: bool = True,
    storage: str = "auto",
) -> Splits:
    if num_classes is not None:
        raise ConfigError(f"dataset.num_classes = {num_classes}: a forecast is a number; type dataset.num_classes=null")
    if window < 1:
        raise ConfigError(f"dataset.window = {window}: must be at least 1; type dataset.window=24")
    if list(in_shape) != [window, 1]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: windows of one value are [{window}, 1]; "
            f"type dataset.in_shape=[{window},1]"
        )
    file = csv_file(path)
    if in_memory(storage, nbytes=estimated_rows(file) * (BYTES_PER_STEP * window + BYTES_PER_ROW)):
        series = read_series(path, column)
        parts = _parts(len(series), window, val_fraction, test_fraction)
        mean, std = _statistics(lambda: _slices(series, parts[0][1] + window), normalize)
        return _splits(_window_tensors(series, window, parts, mean, std), window, mean, std, normalize)
    directory = cached(cache_dir("series", file, column), lambda folder: write_series(path, column, folder / VALUES))
    values = FlatFile(directory / VALUES, VALUE_DTYPE)
    parts = _parts(len(values), window, val_fraction, test_fraction)
    mean, std = _statistics(lambda: values.chunks(0, parts[0][1] + window, CHUNK_VALUES), normalize)
    splits = [SeriesWindows(values, start, stop, window, mean, std) for start, stop in parts]
    return _splits(splits, window, mean, std, normalize)


def csv_file(path: str | None) -> Path:
    file = SHIPPED if path is None else Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"dataset.path = {path}: no such file ({file.resolve()}); type the path of a CSV file")
    return file


def estimated_rows(file: Path) -> int:
    """The rows of a CSV file, from the length of the lines in its first SNIFF_BYTES (exact in a shorter file)."""
    with open(file, "rb") as handle:
        sample = handle.read(SNIFF_BYTES)
    return math.ceil(file.stat().st_size * (sample.count(b"\n") + 1) / max(len(sample), 1))


def read_series(path: str | None, column: str) -> np.ndarray:
    """The values of one column, in file order; every cell must be a number."""
    return np.concatenate(list(column_chunks(path, column)))


def write_series(path: str | None, column: str, target: Path) -> None:
    with open(target, "wb") as handle:
        for chunk in column_chunks(path, column):
            handle.write(chunk.astype(VALUE_DTYPE).tobytes())


def column_chunks(path: str | None, column: str) -> Iterator[np.ndarray]:
    """The values of one column in file order, CHUNK_VALUES at a time, read row by row; every cell must be a number.
    Rows of nothing but blanks are skipped; the delimiter (, ; tab or |) is detected."""
    shown = str(SHIPPED) if path is None else path
    try:
        with open(csv_file(path), newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, _dialect(handle))
            header = next((row for row in reader if not _blank(row)), None)
            if header is None:
                raise ConfigError(f"dataset.path = {shown}: needs a header row and at least one data row")
            header = [name.strip() for name in header]
            if column not in header:
                where = "the shipped sunspots.csv" if path is None else path
                raise ConfigError(
                    f"dataset.column = {column}: not a column of {where}; type one of {' | '.join(header)}"
                )
            yield from _values(reader, header, column, shown)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"dataset.path = {shown}: not a readable CSV text file ({error})") from error


def _dialect(handle) -> type[csv.Dialect]:
    sample = handle.read(SNIFF_BYTES)
    handle.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _blank(row: list[str]) -> bool:
    return not "".join(row).strip()


def _values(reader, header: list[str], column: str, shown: str) -> Iterator[np.ndarray]:
    """The column's values in the reader's rows after the header; the loop that reads every row of a large file."""
    index, width = header.index(column), len(header)
    values, read = [], 0
    for row in reader:
        if len(row) == width:
            try:
                value = float(row[index])  # float() ignores the blanks around a number
            except ValueError:
                value = math.nan
            if math.isfinite(value):  # nan and inf are gaps, not values
                values.append(value)
                if len(values) == CHUNK_VALUES:
                    yield np.array(values)
                    values, read = [], read + len(values)
                continue
        if not _blank(row):
            _refuse(row, reader.line_num, index, width, column, shown)
    if not read + len(values):
        raise ConfigError(f"dataset.path = {shown}: needs a header row and at least one data row")
    if values:
        yield np.array(values)


def _refuse(row: list[str], line: int, index: int, width: int, column: str, shown: str) -> None:
    if len(row) != width:
        raise ConfigError(f"dataset.path = {shown}: line {line} has {len(row)} cells, the header {width}; fix the file")
    raise ConfigError(
        f"dataset.column = {column}: line {line} holds {row[index].strip()!r}, not a finite number; a series needs "
        "a value in every row (fill the gaps, or pick another column)"
    )


def _parts(length: int, window: int, val_fraction: float, test_fraction: float) -> list[tuple[int, int]]:
    """(start, stop) of the train, val and test windows, numbered by their first value; the train part's values
    (those its windows and targets hold) are the first stop + window."""
    samples = length - window
    test_count, val_count = round(samples * test_fraction), round(samples * val_fraction)
    train_count = samples - val_count - test_count
    if min(train_count, val_count, test_count) < 1:
        raise ConfigError(
            f"dataset.window = {window}: the series has {length} values, too few for windows of {window} in "
            f"three splits; type a smaller dataset.window (or a longer series)"
        )
    return [(0, train_count), (train_count, train_count + val_count), (train_count + val_count, samples)]


def _slices(series: np.ndarray, stop: int) -> Iterator[np.ndarray]:
    """series[:stop] in the chunks FlatFile.chunks reads a file in."""
    return (series[begin : min(begin + CHUNK_VALUES, stop)] for begin in range(0, stop, CHUNK_VALUES))


def _statistics(chunks: Callable[[], Iterator[np.ndarray]], normalize: bool) -> tuple[float, float]:
    """The mean and std (as numpy's, ddof 0) of the values that chunks() gives, in two passes over them: equal to
    numpy's on the whole array while it is one chunk, and the same on both paths, which chunk alike."""
    if not normalize:
        return 0.0, 1.0
    total = count = 0
    for chunk in chunks():
        total, count = total + chunk.sum(), count + len(chunk)
    mean = float(total / count)
    squares = sum(np.square(chunk - mean).sum() for chunk in chunks())
    return mean, math.sqrt(squares / count) or 1.0


def _window_tensors(
    series: np.ndarray, window: int, parts: list[tuple[int, int]], mean: float, std: float
) -> list[tuple[Tensor, Tensor]]:
    scaled = torch.as_tensor((series - mean) / std, dtype=torch.float32)
    inputs = scaled.unfold(0, window, 1).unsqueeze(-1)  # (windows, window, 1)
    targets = scaled[window:].unsqueeze(-1)  # (windows - 1, 1): the value after each window
    return [(inputs[start:stop].clone(), targets[start:stop].clone()) for start, stop in parts]


def _splits(splits: list, window: int, mean: float, std: float, normalize: bool) -> Splits:
    mean, std = (torch.tensor([mean]), torch.tensor([std])) if normalize else (None, None)
    spec = DataSpec(in_shape=[window, 1], target_mean=mean, target_std=std)
    return Splits(*splits, spec=spec, input_mean=mean, input_std=std)


class SeriesWindows(Dataset):
    """Windows start .. stop - 1 of a flat file of values, read on access: item i is the in-memory tensors' row i,
    values[i : i + window] standardised as (window, 1), and the value after them as (1,)."""

    def __init__(self, values: FlatFile, start: int, stop: int, window: int, mean: float, std: float):
        self.values, self.start, self.count = values, start, stop - start
        self.window, self.mean, self.std = window, mean, std

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: int) -> tuple[Tensor, Tensor]:
        begin = self.start + key % self.count  # keys carry the epoch (module.EpochBatches)
        scaled = (self.values.read(begin, self.window + 1) - self.mean) / self.std
        values = torch.from_numpy(scaled.astype(np.float32))
        return values[:-1, None], values[-1:]

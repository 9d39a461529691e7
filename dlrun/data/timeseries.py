"""One column of a CSV file as a time series: sliding windows of `window` values, each to forecast the next one.

The rows are read in file order (oldest first). The series is split in time: the first part trains, the next
val_fraction validates and the last test_fraction tests (by the time of the value forecast; a window may reach back
into the part before). Values are standardised with the training part's mean and std; the task reports errors in
the series' own units. Without dataset.path it reads the shipped monthly sunspot numbers (dlrun/data/files/).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dlrun.data.module import DataModule
from dlrun.data.tabular import numbers, read_table
from dlrun.errors import ConfigError

FILES = Path(__file__).resolve().parent / "files"
SHIPPED = FILES / "sunspots.csv"  # monthly mean sunspot numbers 1749-2008, NOAA NGDC (public domain)


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
    batch_size: int = 64,
    num_workers: int = 0,
    shuffle_seed: int = 0,
) -> DataModule:
    if num_classes is not None:
        raise ConfigError(f"dataset.num_classes = {num_classes}: a forecast is a number; type dataset.num_classes=null")
    if window < 1:
        raise ConfigError(f"dataset.window = {window}: must be at least 1; type dataset.window=24")
    if list(in_shape) != [window, 1]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: windows of one value are [{window}, 1]; "
            f"type dataset.in_shape=[{window},1]"
        )
    series = read_series(path, column)
    samples = len(series) - window
    test_count, val_count = round(samples * test_fraction), round(samples * val_fraction)
    train_count = samples - val_count - test_count
    if min(train_count, val_count, test_count) < 1:
        raise ConfigError(
            f"dataset.window = {window}: the series has {len(series)} values, too few for windows of {window} in "
            f"three splits; type a smaller dataset.window (or a longer series)"
        )
    mean, std = 0.0, 1.0
    if normalize:
        seen = series[: train_count + window]  # every value the training windows and targets hold
        mean, std = float(seen.mean()), float(seen.std()) or 1.0
    scaled = torch.as_tensor((series - mean) / std, dtype=torch.float32)
    inputs = scaled.unfold(0, window, 1)[:samples].unsqueeze(-1)  # (samples, window, 1)
    targets = scaled[window:].unsqueeze(-1)  # (samples, 1): the value after each window
    bounds = [0, train_count, train_count + val_count, samples]
    splits = [(inputs[a:b].clone(), targets[a:b].clone()) for a, b in zip(bounds, bounds[1:], strict=False)]
    statistic = torch.tensor([mean]), torch.tensor([std])
    return DataModule(
        *splits,
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle_seed=shuffle_seed,
        input_mean=statistic[0] if normalize else None,
        input_std=statistic[1] if normalize else None,
        target_mean=statistic[0] if normalize else None,
        target_std=statistic[1] if normalize else None,
    )


def read_series(path: str | None, column: str) -> np.ndarray:
    """The values of one column, in file order; every cell must be a number."""
    header, rows = read_table(str(SHIPPED) if path is None else path, "dataset.path")
    if column not in header:
        where = "the shipped sunspots.csv" if path is None else path
        raise ConfigError(f"dataset.column = {column}: not a column of {where}; type one of {' | '.join(header)}")
    cells = [row[header.index(column)] for row in rows]
    values = numbers(cells)
    if values is None or np.isnan(values).any():
        bad = next(i for i, cell in enumerate(cells) if numbers([cell]) is None or cell == "")
        raise ConfigError(
            f"dataset.column = {column}: line {bad + 2} holds {cells[bad]!r}, not a number; a series needs a value "
            "in every row (fill the gaps, or pick another column)"
        )
    return values

"""A .csv of feature rows as inputs: one input per row, prod(in_shape) numeric columns, an optional header row."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

from dlrun.errors import ConfigError, first_line
from dlrun.inputs.messages import describe_shape

if TYPE_CHECKING:
    from torch import Tensor


def read_csv(path: Path, in_shape: tuple[int, ...], key: str) -> tuple[list[str], Tensor]:
    """The rows of path as inputs [N, *in_shape], named file:line."""
    import torch

    features = math.prod(in_shape)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(
            f"{key} = {path}: cannot be read as CSV text ({first_line(error)}); type a CSV file of numbers"
        ) from error
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # a header row of column names
    if not rows:
        raise ConfigError(f"{key} = {path}: no rows of numbers in it; type a CSV with one input per row")
    names, values = [], []
    for line, row in rows:
        if len(row) != features:
            raise ConfigError(
                f"{key} = {path}: line {line} has {len(row)} columns, but the model takes "
                f"{describe_shape(in_shape)}; type a CSV with {features} numeric columns per row "
                "(a header row is optional)"
            )
        bad = next((cell for cell in row if not _is_number(cell)), None)
        if bad is not None:
            raise ConfigError(
                f"{key} = {path}: line {line} holds {bad.strip()!r}, not a number; every column must be a number "
                "(only a first row of column names may hold text)"
            )
        names.append(f"{path}:{line}")
        values.append([float(cell) for cell in row])
    return names, torch.tensor(values, dtype=torch.float32).reshape(len(values), *in_shape)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True

"""A table in a CSV file: one target column, numeric and categorical feature columns.

The loss decides the problem (dataset.num_classes follows it in conf/dataset/csv.yaml): cross_entropy or bce
classify the target's values, mse regresses a numeric target. Numeric features are standardised with the training
split's statistics, an empty numeric cell takes the training mean, and categorical features (the columns that are
not all numbers, or those named in dataset.categorical) are one-hot encoded.
"""

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlrun.data.module import Splits
from dlrun.data.spec import DataSpec
from dlrun.data.splits import as_tensors, split_indices, standardize
from dlrun.errors import ConfigError

MAX_CLASS_VALUES = 100  # a numeric target with more distinct whole numbers than this is a regression target
SNIFF_BYTES = 64 * 1024


def load(
    *,
    name: str = "csv",  # the dataset option, as config messages name it
    path: str | None,
    target: str | None,
    num_classes: int | str | None = "auto",
    in_shape: Sequence[int] | str = "auto",
    features: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    max_categories: int = 50,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    normalize: bool = True,
) -> Splits:
    header, rows = read_table(path, "dataset.path")
    columns = _columns(header, rows)
    if target is None:
        raise ConfigError(f"dataset.target = null: type the column to predict, one of {_listing(header)}")
    _check_named(header, [target], "dataset.target", path)
    feature_names = list(features) if features is not None else [name for name in header if name != target]
    _check_named(header, feature_names, "dataset.features", path)
    if target in feature_names:
        raise ConfigError(f"dataset.features: holds the target column {target}; leave it out of dataset.features")
    if not feature_names:
        raise ConfigError(f"dataset.features: no input columns left besides {target}; type dataset.features=null")
    categorical = set(categorical or [])
    _check_named(header, sorted(categorical), "dataset.categorical", path)

    classification = num_classes is not None
    labels, class_names = _target(columns[target], target, classification, num_classes)
    train, val, test = _split(labels, classification, val_fraction, test_fraction, split_seed, len(rows))
    blocks = [
        _encode(columns[name], name, name in categorical, train, max_categories, normalize) for name in feature_names
    ]
    inputs = np.concatenate(blocks, axis=1)
    if in_shape != "auto" and list(in_shape) != [inputs.shape[1]]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: the features of {path} encode to {inputs.shape[1]} numbers; "
            f"type dataset.in_shape=[{inputs.shape[1]}] or dataset.in_shape=auto"
        )
    return table_splits(
        inputs,
        labels,
        (train, val, test),
        classification=classification,
        normalize=normalize,
        class_names=class_names,
    )


def table_splits(
    inputs: np.ndarray, labels: np.ndarray, rows: tuple, *, classification: bool, normalize: bool, class_names: list
) -> Splits:
    """A table's encoded inputs and labels as the train, val and test rows; regression targets standardised with
    the training rows' mean and std."""
    splits = [as_tensors(inputs[i], labels[i], classification=classification) for i in rows]
    xs, ys = [x for x, _ in splits], [y for _, y in splits]
    target_mean = target_std = None
    if normalize and not classification:
        ys, target_mean, target_std = standardize(*ys, dims=(0,))
    spec = DataSpec(in_shape=[inputs.shape[1]], class_names=class_names, target_mean=target_mean, target_std=target_std)
    return Splits(*zip(xs, ys, strict=True), spec=spec)


def read_table(path: str | None, key: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV file (delimiter , ; tab or |, detected); errors name key."""
    if path is None:
        raise ConfigError(f"{key} = null: type the CSV file to read, e.g. {key}=data.csv")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key} = {path}: no such file ({file.resolve()}); type the path of a CSV file")
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(SNIFF_BYTES)
            handle.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            except csv.Error:
                dialect = csv.excel
            table = [row for row in csv.reader(handle, dialect) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{key} = {path}: not a readable CSV text file ({error})") from error
    if len(table) < 2:
        raise ConfigError(f"{key} = {path}: needs a header row and at least one data row")
    header = [name.strip() for name in table[0]]
    for number, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(
                f"{key} = {path}: line {number} has {len(row)} cells, the header {len(header)}; fix the file"
            )
    return header, [[cell.strip() for cell in row] for row in table[1:]]


def _columns(header: list[str], rows: list[list[str]]) -> dict[str, list[str]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def _listing(header: list[str]) -> str:
    return " | ".join(header)


def _check_named(header: list[str], names: list[str], key: str, path: str) -> None:
    missing = [name for name in names if name not in header]
    if missing:
        raise ConfigError(f"{key}: {', '.join(missing)} not a column of {path}; its columns are {_listing(header)}")


def numbers(cells: list[str]) -> np.ndarray | None:
    """The cells as floats (empty cells NaN), or None when some cell is not a number."""
    values = np.empty(len(cells))
    for i, cell in enumerate(cells):
        if cell == "":
            values[i] = math.nan
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            return None
    return values


def _target(cells: list[str], name: str, classification: bool, num_classes) -> tuple[np.ndarray, list[str]]:
    if any(cell == "" for cell in cells):
        row = next(i for i, cell in enumerate(cells) if cell == "") + 2
        raise ConfigError(f"dataset.target = {name}: line {row} has no value; fill it in or delete the row")
    values = numbers(cells)
    if not classification:
        if values is None:
            raise ConfigError(
                f"dataset.target = {name}: holds text, not numbers to regress; type loss=cross_entropy to classify it"
            )
        return values, []
    if values is not None:
        distinct = np.unique(values)
        if len(distinct) > MAX_CLASS_VALUES or not np.all(distinct == np.round(distinct)):
            raise ConfigError(
                f"dataset.target = {name}: {len(distinct)} distinct numbers, a quantity rather than classes; "
                "type loss=mse to regress it"
            )
        class_names = [_number_name(value) for value in distinct]
        labels = np.searchsorted(distinct, values)
    else:
        class_names = sorted(set(cells))
        index = {value: i for i, value in enumerate(class_names)}
        labels = np.array([index[cell] for cell in cells])
    if num_classes != "auto" and num_classes != len(class_names):
        raise ConfigError(
            f"dataset.num_classes = {num_classes}: the target {name} has {len(class_names)} classes "
            f"({', '.join(class_names[:5])}{', ...' if len(class_names) > 5 else ''}); "
            + ("type loss=cross_entropy" if num_classes == 2 else f"type dataset.num_classes={len(class_names)}")
        )
    return labels, class_names


def _number_name(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _split(labels, classification, val_fraction, test_fraction, seed, count):
    try:
        return split_indices(
            labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, stratify=classification
        )
    except ValueError as error:  # too few rows, or a class too rare to be in every split
        raise ConfigError(
            f"dataset.val_fraction, dataset.test_fraction = {val_fraction}, {test_fraction}: cannot split the "
            f"{count} rows ({error}); use more rows, or fractions that leave each split a few rows of every class"
        ) from error


def _encode(cells, name, categorical, train, max_categories, normalize) -> np.ndarray:
    """One numeric column (standardised, empty cells at the training mean) or a one-hot block."""
    values = None if categorical else numbers(cells)
    if values is None:
        categories = sorted(set(cells))
        if len(categories) > max_categories:
            raise ConfigError(
                f"dataset.features: column {name} has {len(categories)} distinct text values (more than "
                f"dataset.max_categories = {max_categories}), too many to one-hot encode; leave it out with "
                "dataset.features=[...], or raise dataset.max_categories"
            )
        index = {value: i for i, value in enumerate(categories)}
        return np.eye(len(categories))[[index[cell] for cell in cells]]
    known = values[train][~np.isnan(values[train])]
    if not len(known):
        raise ConfigError(f"dataset.features: column {name} has no values in the training rows; leave it out")
    values = np.where(np.isnan(values), known.mean(), values)
    if normalize:
        values = (values - known.mean()) / (known.std() or 1.0)
    return values[:, None]

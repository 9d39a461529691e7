"""A table in a CSV file: one target column, numeric and categorical feature columns, read by pandas (imported
only here, for dataset=csv) with its pyarrow engine: fast, and strict about rows with too few or too many cells.

Missing values: empty cells and pandas' missing markers (NA, N/A, nan, NaN, null, NULL, None, #N/A, ...) and "?";
an infinite number counts as missing too. Column types are inferred by pandas: a column of numbers is numeric, any
other (text, true/false, dates) categorical, as is a number column named in dataset.categorical.

The loss decides the problem (dataset.num_classes follows it in conf/dataset/csv.yaml): cross_entropy or bce
classify the target's values, mse regresses a numeric target. A row whose target is missing is left out, and the
count is logged; a target with one class is refused. Numeric features are standardised with the training split's
statistics, a missing numeric cell takes the training mean, and categorical features are one-hot encoded (a missing
cell: all zeros).
"""

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlrun.data.module import Splits
from dlrun.data.spec import DataSpec
from dlrun.data.splits import as_tensors, split_indices, standardize
from dlrun.errors import ConfigError

MAX_CLASS_VALUES = 100  # a numeric target with more distinct whole numbers than this is a regression target
SNIFF_BYTES = 64 * 1024
MISSING = ["?"]  # missing-value markers besides pandas' own (empty, NA, nan, null, ...)
log = logging.getLogger("dlrun.data")


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
    table = read_table(path, "dataset.path")
    header = list(table.columns)
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

    table = _with_target(table, target, path)
    classification = num_classes is not None
    labels, class_names = _target(table[target], target, classification, num_classes, path)
    train, val, test = _split(labels, classification, val_fraction, test_fraction, split_seed, len(table))
    blocks = [
        _encode(table[name], name, name in categorical, train, max_categories, normalize) for name in feature_names
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


def read_table(path: str | None, key: str):
    """The CSV file as a pandas DataFrame (delimiter , ; tab or |, detected; names and text cells stripped of
    spaces); errors name key."""
    if path is None:
        raise ConfigError(f"{key} = null: type the CSV file to read, e.g. {key}=data.csv")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key} = {path}: no such file ({file.resolve()}); type the path of a CSV file")
    import pandas as pd

    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(SNIFF_BYTES)
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
        table = pd.read_csv(file, sep=delimiter, engine="pyarrow", na_values=MISSING, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise ConfigError(f"{key} = {path}: not a readable CSV text file ({error})") from error
    except (pd.errors.ParserError, ValueError) as error:  # pyarrow: "Expected 3 columns, got 2: <the row>"
        raise ConfigError(f"{key} = {path}: {_parse_problem(error)}; fix the file") from error
    if table.empty:
        raise ConfigError(f"{key} = {path}: needs a header row and at least one data row")
    table.columns = [str(name).strip() for name in table.columns]
    for name in table.columns:
        if not _numeric(table[name]) and table[name].dtype != bool:
            table[name] = table[name].astype("string").str.strip().replace("", pd.NA)
    return table


def _parse_problem(error: Exception) -> str:
    """pyarrow's parse error without its prefix: 'Expected 3 columns, got 2: 4,5' as 'a row has 2 cells, ...'."""
    text = str(error).removeprefix("CSV parse error: ").strip()
    parts = text.split(" ", 5)
    if text.startswith("Expected ") and len(parts) == 6 and parts[2] == "columns,":
        return f"a row has {parts[4].rstrip(':')} cells, the header {parts[1]} ({parts[5][:80]})"
    return text


def _numeric(column) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(column) and not is_bool_dtype(column)


def _listing(header: list[str]) -> str:
    return " | ".join(header)


def _check_named(header: list[str], names: list[str], key: str, path: str) -> None:
    missing = [name for name in names if name not in header]
    if missing:
        raise ConfigError(f"{key}: {', '.join(missing)} not a column of {path}; its columns are {_listing(header)}")


def _values(column) -> np.ndarray:
    """A numeric column as floats, missing and infinite values NaN."""
    values = column.to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def _missing(column) -> np.ndarray:
    return np.isnan(_values(column)) if _numeric(column) else column.isna().to_numpy()


def _with_target(table, target: str, path: str):
    """The rows that have a target value; how many were left out is logged."""
    missing = _missing(table[target])
    if missing.all():
        raise ConfigError(f"dataset.target = {target}: no row of {path} has a value there; type another column")
    if missing.any():
        lines = ", ".join(str(line) for line in (np.flatnonzero(missing)[:5] + 2))
        log.warning(
            "dataset.target = %s: %d of %d rows have no value there (lines %s%s): left out",
            target,
            missing.sum(),
            len(missing),
            lines,
            ", ..." if missing.sum() > 5 else "",
        )
        table = table[~missing].reset_index(drop=True)
    return table


def _target(column, name: str, classification: bool, num_classes, path: str) -> tuple[np.ndarray, list[str]]:
    numeric = _numeric(column)
    if not classification:
        if not numeric:
            raise ConfigError(
                f"dataset.target = {name}: holds text, not numbers to regress; type loss=cross_entropy to classify it"
            )
        return _values(column), []
    if numeric:
        values = _values(column)
        distinct = np.unique(values)
        if len(distinct) > MAX_CLASS_VALUES or not np.all(distinct == np.round(distinct)):
            raise ConfigError(
                f"dataset.target = {name}: {len(distinct)} distinct numbers, a quantity rather than classes; "
                "type loss=mse to regress it"
            )
        class_names = [_number_name(value) for value in distinct]
        labels = np.searchsorted(distinct, values)
    else:
        cells = column.astype(str).to_numpy()
        distinct, labels = np.unique(cells, return_inverse=True)
        class_names = distinct.tolist()
    if len(class_names) < 2:
        raise ConfigError(
            f"dataset.target = {name}: one class ({class_names[0]}) in every row of {path} that has a value; "
            "classification needs 2 or more: type another dataset.target"
        )
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


def _encode(column, name, categorical, train, max_categories, normalize) -> np.ndarray:
    """One numeric column (standardised, missing cells at the training mean) or a one-hot block (missing: zeros)."""
    if categorical or not _numeric(column):
        import pandas as pd

        codes = pd.Categorical(column).codes  # categories sorted, -1 where missing
        count = codes.max() + 1 if len(codes) else 0
        if count > max_categories:
            raise ConfigError(
                f"dataset.features: column {name} has {count} distinct values (more than "
                f"dataset.max_categories = {max_categories}), too many to one-hot encode; leave it out with "
                "dataset.features=[...], or raise dataset.max_categories"
            )
        if not (codes[train] >= 0).any():
            raise ConfigError(f"dataset.features: column {name} has no values in the training rows; leave it out")
        block = np.zeros((len(codes), count))
        known = codes >= 0
        block[np.flatnonzero(known), codes[known]] = 1.0
        return block
    values = _values(column)
    known = values[train][~np.isnan(values[train])]
    if not len(known):
        raise ConfigError(f"dataset.features: column {name} has no values in the training rows; leave it out")
    values = np.where(np.isnan(values), known.mean(), values)
    if normalize:
        values = (values - known.mean()) / (known.std() or 1.0)
    return values[:, None]

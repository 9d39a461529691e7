"""dataset=shards: images packed by `dlrun-shards` (dlrun/pack.py) into Arrow shards of Hugging Face `datasets`.

root is the folder `DatasetDict.save_to_disk` wrote: dataset_dict.json naming the splits (train, and maybe val and
test), and per split a state.json listing its .arrow files. `datasets.load_from_disk` memory-maps them, so opening
costs nothing and the images stay on disk, in the page cache, shared by every DataLoader worker. A split is a table
of rows: `image` (the encoded bytes), `label` (a ClassLabel naming the classes) and `path` (the packed file, for
messages). Access is by row (map-style), so the streamed DataModule keeps dlrun's own samplers: exact mid-epoch
resume and disjoint torchrun shares. Reading a row takes the image column's bytes straight from Arrow (ShardImages),
decoding nothing else; the Decoder and transforms of dlrun/data/streaming.py do the rest in the workers, as for an
image folder streamed. A missing val or test split is held out of train by its fraction, stratified, as
dataset=image_folder holds it out: packed and unpacked, a folder trains on the same batches.

dataset=shards_table (load_table): a CSV file dlrun-shards packed, one train split, held in memory as float32. The
inputs are its number columns but the target, each standardised with the mean and std of the training rows
(pyarrow.compute), empty cells at that mean; a text target is classified, a number target regressed (loss=mse).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow
import pyarrow.compute as pc

from dlrun.data.folders import check_image_settings
from dlrun.data.image_listing import check_class_count
from dlrun.data.images import image_stream_module
from dlrun.data.module import SPLITS, Splits
from dlrun.data.splits import hold_out_splits
from dlrun.data.tabular import _split, table_splits
from dlrun.errors import ConfigError

MAKE = "dlrun-shards <image folder or .csv file> <new folder>"  # the command that packs one, for messages


def load(
    *,
    name: str = "shards",  # the dataset option, as config messages name it
    root: str | None,
    in_shape: Sequence[int],
    num_classes: int | str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    normalize: bool = True,
    transforms: dict | None = None,
    unreadable: str = "skip",
    seed: int = 0,
) -> Splits:
    directory = _root(root)
    check_image_settings(in_shape, unreadable)
    splits = open_shards(directory)
    class_names = _class_names(directory, splits, num_classes)
    labels = {split: rows.data.column("label").to_numpy() for split, rows in splits.items()}
    chosen = hold_out_splits(labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed)
    sources = {
        split: (ShardImages(splits[origin], indices, f"{directory}/{origin}"), labels[origin][indices])
        for split, (origin, indices) in chosen.items()
    }
    return image_stream_module(
        sources,
        in_shape=in_shape,
        normalize=normalize,
        transforms=transforms,
        unreadable=unreadable,
        class_names=class_names,
        seed=seed,
    )


class ShardImages:
    """The images of some rows of a packed split: read(i) gives the bytes of row indices[i], name(i) says where it
    is. The Arrow columns are taken from the memory-mapped table once per process; pickled (a worker started by
    spawn), the dataset travels as its file names and is mapped again there, not copied."""

    def __init__(self, rows, indices: np.ndarray, where: str):
        self.rows, self.indices, self.where = rows, np.asarray(indices), where
        self._columns = {}

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int) -> bytes:
        return self._column("image")[int(self.indices[index])].as_py()

    def name(self, index: int) -> str:
        row = int(self.indices[index])
        if "path" not in self.rows.column_names:
            return f"{self.where} row {row}"
        return f"{self.where} row {row} ({self._column('path')[row].as_py()})"

    def _column(self, name: str):
        if name not in self._columns:
            self._columns[name] = self.rows.data.column(name)  # a pyarrow.ChunkedArray over the mapped files
        return self._columns[name]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_columns": {}}


def load_table(
    *,
    name: str = "shards_table",  # the dataset option, as config messages name it
    root: str | None,
    target: str | None,
    num_classes: int | str | None = "auto",
    in_shape: Sequence[int] | str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    normalize: bool = True,
) -> Splits:
    directory = _root(root)
    table = _opened(directory)["train"].data.table
    features = _table_features(directory, table, target)
    classification = num_classes is not None
    labels, class_names = _table_target(table.column(target), target, classification, num_classes)
    train, val, test = _split(labels, classification, val_fraction, test_fraction, split_seed, len(labels))
    inputs = np.stack([_standardised(table, feature, train, normalize) for feature in features], axis=1)
    if in_shape != "auto" and list(in_shape) != [len(features)]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: {directory} has {len(features)} number columns besides the "
            f"target; type dataset.in_shape=[{len(features)}] or dataset.in_shape=auto"
        )
    return table_splits(
        inputs, labels, (train, val, test), classification=classification, normalize=normalize, class_names=class_names
    )


def open_shards(directory: Path) -> dict:
    """The splits of the saved DatasetDict in directory, checked to hold every file and the columns dlrun reads."""
    splits = _opened(directory)
    for split, rows in splits.items():
        _check_columns(directory, split, rows.features)
    return splits


def _opened(directory: Path) -> dict:
    """The splits of the saved DatasetDict in directory, checked to hold every file its splits list."""
    _check_files(directory)
    try:
        saved = datasets.load_from_disk(str(directory))
    except (OSError, ValueError, KeyError, pyarrow.ArrowException) as error:
        raise ConfigError(
            f"dataset.root = {directory}: cannot be read as Arrow shards ({type(error).__name__}: {error}); copy "
            f"the folder again, or pack again: {MAKE}"
        ) from error
    return dict(saved)


def _root(root: str | None) -> Path:
    if root is None:
        raise ConfigError(f"dataset.root = null: type the folder dlrun-shards packed the images into; make one: {MAKE}")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"dataset.root = {root}: no such folder ({path}); type the folder dlrun-shards wrote")
    return path


def _check_files(directory: Path) -> None:
    """A folder that is no saved DatasetDict, or one missing a file its split lists (an incomplete copy), is named
    before datasets opens anything."""
    index = directory / "dataset_dict.json"
    if not index.is_file():
        raise ConfigError(
            f"dataset.root = {directory}: not a folder of packed shards (it has no dataset_dict.json); type the "
            f"folder dlrun-shards wrote, or make one: {MAKE}"
        )
    splits = _json(index, directory).get("splits", [])
    unknown = sorted(set(splits) - set(SPLITS))
    if "train" not in splits or unknown:
        raise ConfigError(
            f"dataset.root = {directory}: its splits are {', '.join(splits) or 'none'}; dataset=shards reads train "
            f"and optionally val and test, as dlrun-shards writes them: {MAKE}"
        )
    missing = []
    for split in splits:
        state = directory / split / "state.json"
        if not state.is_file():
            missing.append(state)
            continue
        listed = [entry["filename"] for entry in _json(state, directory).get("_data_files", [])]
        missing += [directory / split / file for file in listed if not (directory / split / file).is_file()]
    if missing:
        shown = ", ".join(str(path.relative_to(directory)) for path in missing[:3])
        raise ConfigError(
            f"dataset.root = {directory}: incomplete, {len(missing)} file(s) missing ({shown}); copy the whole "
            f"folder again, or pack again: {MAKE}"
        )


def _json(path: Path, directory: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"dataset.root = {directory}: {path.relative_to(directory)} cannot be read ({error}); copy the folder "
            f"again, or pack again: {MAKE}"
        ) from error


def _check_columns(directory: Path, split: str, features) -> None:
    image, label = features.get("image"), features.get("label")
    if not (
        isinstance(image, datasets.Value)
        and image.dtype in ("binary", "large_binary")
        and isinstance(label, datasets.ClassLabel)
    ):
        raise ConfigError(
            f"dataset.root = {directory}: the {split} split's columns are {_columns(features)}; dataset=shards "
            f"reads image (bytes) and label (a ClassLabel), as dlrun-shards writes them: {MAKE}"
        )


def _columns(features) -> str:
    return ", ".join(
        f"{name} ({getattr(feature, 'dtype', type(feature).__name__)})" for name, feature in features.items()
    )


def _class_names(directory: Path, splits: dict, num_classes: int | str) -> list[str]:
    names = {split: list(rows.features["label"].names) for split, rows in splits.items()}
    class_names = names["train"]
    differing = [split for split, split_names in names.items() if split_names != class_names]
    if differing:
        raise ConfigError(
            f"dataset.root = {directory}: the {differing[0]} split's classes differ from train's; pack the images "
            f"again, all splits at once: {MAKE}"
        )
    check_class_count(directory, class_names, num_classes)
    return class_names


def _table_features(directory: Path, table: pyarrow.Table, target: str | None) -> list[str]:
    """The number columns other than the target: the inputs."""
    columns = ", ".join(table.column_names)
    if target is None:
        raise ConfigError(f"dataset.target = null: type the column to predict, one of {columns}")
    if target not in table.column_names:
        raise ConfigError(f"dataset.target = {target}: {directory} has no such column; type one of {columns}")
    features = [
        field.name
        for field in table.schema
        if field.name != target and (pyarrow.types.is_integer(field.type) or pyarrow.types.is_floating(field.type))
    ]
    if not features:
        raise ConfigError(
            f"dataset.root = {directory}: no number columns besides the target {target} ({columns}); "
            "dataset=shards_table trains on the number columns"
        )
    return features


def _table_target(column, name: str, classification: bool, num_classes) -> tuple[np.ndarray, list[str]]:
    """Class indices of a text target with the class names (sorted), or the numbers of a number target."""
    if column.null_count:
        raise ConfigError(f"dataset.target = {name}: {column.null_count} rows have no value; fill them in or drop them")
    text = pyarrow.types.is_string(column.type) or pyarrow.types.is_large_string(column.type)
    if not classification:
        if text:
            raise ConfigError(f"dataset.target = {name}: holds text, not numbers to regress; type loss=cross_entropy")
        return pc.cast(column, pyarrow.float64()).to_numpy(), []
    if not text:
        raise ConfigError(
            f"dataset.target = {name}: holds numbers; dataset=shards_table classifies text targets, so type loss=mse "
            "to regress it"
        )
    class_names = sorted(pc.unique(column).to_pylist())
    if num_classes != "auto" and num_classes != len(class_names):
        raise ConfigError(
            f"dataset.num_classes = {num_classes}: the target {name} has {len(class_names)} classes; type "
            + ("loss=cross_entropy" if num_classes == 2 else f"dataset.num_classes={len(class_names)}")
        )
    labels = pc.index_in(column, value_set=pyarrow.array(class_names, column.type)).to_numpy()
    return labels.astype(np.int64), class_names


def _standardised(table: pyarrow.Table, name: str, train: np.ndarray, normalize: bool) -> np.ndarray:
    """A number column as float32, empty cells at the training rows' mean; standardised by their mean and std."""
    values = pc.cast(table.column(name), pyarrow.float64())
    known = values.take(pyarrow.array(train))
    mean = pc.mean(known).as_py()
    if mean is None:
        raise ConfigError(f"dataset.root: column {name} has no values in the training rows; drop it from the CSV file")
    filled = pc.fill_null(values, mean).to_numpy()
    if normalize:
        filled = (filled - mean) / (pc.stddev(known).as_py() or 1.0)
    return filled.astype(np.float32)

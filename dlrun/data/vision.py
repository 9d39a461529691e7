"""torchvision's download datasets (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100), read by torchvision's own classes.

The files are read once and kept as tensors; the official test set is the test split and
val_fraction of the official training set is held out for validation. dataset.transforms adds a resize and
random training augmentations, applied per batch (dlrun/data/transforms.py).
"""

import functools
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dlrun.data.images import image_data_module
from dlrun.data.module import Splits
from dlrun.data.splits import split_off
from dlrun.errors import ConfigError

DATASETS = ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100")
CIFAR = ("CIFAR10", "CIFAR100")  # pickled batches under a folder of their own; the rest are MNIST-style IDX files
# What torchvision raises for files it cannot find, fetch or parse (a bad IDX header is an AssertionError).
READ_ERRORS = (RuntimeError, OSError, ValueError, TypeError, KeyError, AssertionError, EOFError, pickle.PickleError)
MISSING_LISTED = 3  # missing files named in the message before "and N more"


def load(
    *,
    name: str,
    root: str,
    download: bool,
    in_shape: Sequence[int],
    num_classes: int,
    val_fraction: float,
    split_seed: int = 0,
    normalize: bool = True,
    transforms: dict | None = None,
) -> Splits:
    if name not in DATASETS:
        raise ConfigError(f"dataset.name = {name}: unknown; type one of {', '.join(DATASETS)}")
    root_dir = Path(root).expanduser().resolve()
    official_train = _read(name, root_dir, download, train=True)
    official_test = _read(name, root_dir, download, train=False)
    train_x, train_y = _as_tensors(official_train, in_shape)
    test_x, test_y = _as_tensors(official_test, in_shape)
    _check_labels(torch.cat([train_y, test_y]), num_classes, name, root_dir)
    try:
        kept, held_out = split_off(train_y.numpy(), fraction=val_fraction, seed=split_seed, stratify=True)
    except ValueError as error:  # too few images for a stratified split
        raise ConfigError(
            f"dataset.val_fraction = {val_fraction}: cannot hold out a validation set with every class from the "
            f"{len(train_y)} training images of {name} ({error}); type a larger dataset.val_fraction"
        ) from error
    # Index the uint8 images, then convert: the float copy of the whole training set is never made.
    xs = [_as_float(train_x[kept]), _as_float(train_x[held_out]), _as_float(test_x)]
    ys = [train_y[kept], train_y[held_out], test_y]
    return image_data_module(
        xs,
        ys,
        in_shape=in_shape,
        normalize=normalize,
        transforms=transforms,
        class_names=list(official_train.classes),
    )


def expected_files(name: str, root: Path) -> list[Path]:
    """The files torchvision's class for name reads under root (MNIST's uncompressed, as it unpacks them)."""
    from torchvision import datasets

    dataset_class = getattr(datasets, name)
    if name in CIFAR:
        folder = root / dataset_class.base_folder
        names = [filename for filename, _ in dataset_class.train_list + dataset_class.test_list]
        return [folder / filename for filename in [*names, dataset_class.meta["filename"]]]
    raw = root / dataset_class.__name__ / "raw"
    return [raw / Path(filename).stem for filename, _ in dataset_class.resources]  # drops the .gz


def _read(name: str, root: Path, download: bool, *, train: bool):
    from torchvision import datasets

    dataset_class = _cifar_class(name) if name in CIFAR else getattr(datasets, name)
    try:
        return dataset_class(str(root), train=train, download=download)
    except READ_ERRORS as error:
        raise _read_error(name, root, download, error) from error


def _read_error(name: str, root: Path, download: bool, error: Exception) -> ConfigError:
    missing = [path for path in expected_files(name, root) if not path.is_file()]
    if missing and download:
        return ConfigError(
            f"dataset.download = true: fetching {name} into {root} failed ({_describe(error)}); this machine may "
            "have no network: copy the files into dataset.root and type dataset.download=false"
        )
    if missing:
        listed = ", ".join(str(path.relative_to(root)) for path in missing[:MISSING_LISTED])
        more = f" and {len(missing) - MISSING_LISTED} more" if len(missing) > MISSING_LISTED else ""
        return ConfigError(
            f"dataset.root = {root}: no {name} files there (missing {listed}{more}); copy them there, point "
            "dataset.root at them, or type dataset.download=true to fetch them (needs a network)"
        )
    return ConfigError(
        f"dataset.root = {root}: the {name} files there cannot be read ({_describe(error)}); replace them with "
        "the original files, or delete them and type dataset.download=true"
    )


def _describe(error: Exception) -> str:
    """The error's type and message on one line (torchvision's checks of a file's format are bare asserts)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else f"{type(error).__name__} (an unexpected format)"


def _as_tensors(dataset, in_shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, H, W) or (N, H, W, C) as uint8 (N, C, H, W), and long labels."""
    images = torch.as_tensor(np.asarray(dataset.data))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    if list(images.shape[1:]) != list(in_shape):
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: the files hold images of shape {list(images.shape[1:])}; "
            f"type dataset.in_shape={list(images.shape[1:])}"
        )
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
    return images, labels


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float in [0, 1], contiguous."""
    return images.float().div_(255).contiguous()


def _check_labels(labels: torch.Tensor, num_classes: int, name: str, root: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"dataset.num_classes = {num_classes}: the {name} labels under {root} run from {int(labels.min())} to "
            f"{int(labels.max())}; type dataset.num_classes={int(labels.max()) + 1} or fix the label files"
        )


@functools.cache
def _cifar_class(name: str):
    """torchvision's CIFAR10 or CIFAR100, checking that the batch files and the meta file exist rather than their
    published checksums, so that a subset in the real pickled format (as the tests write) loads too. The archive a
    download fetches is still checked against its checksum."""
    from torchvision import datasets

    original = getattr(datasets, name)
    return type(
        name,
        (original,),
        {
            "train_list": [[filename, None] for filename, _ in original.train_list],
            "test_list": [[filename, None] for filename, _ in original.test_list],
            "meta": {**original.meta, "md5": None},
            "__doc__": _cifar_class.__doc__,
        },
    )

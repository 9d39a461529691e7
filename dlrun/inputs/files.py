"""New raw inputs from files, one row per input, each of the dataset's in_shape: folders and image files
(images.py), .csv feature rows (csv_rows.py), .npy and .pt tensors (tensors.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dlrun.errors import ConfigError
from dlrun.inputs.csv_rows import read_csv
from dlrun.inputs.images import IMAGE_SUFFIXES, read_image
from dlrun.inputs.tensors import TENSOR_SUFFIXES, read_tensor_file

if TYPE_CHECKING:  # torch loads only once a command gets past checking its arguments
    from torch import Tensor

KINDS = "a folder of images, image files (.png, .jpg, ...), a .csv of feature rows, or a .npy or .pt tensor file"


@dataclass
class Inputs:
    names: list[str]  # one per input: the file, file:line for CSV rows, file[i] for tensor rows
    values: Tensor  # [N, *in_shape] float32, raw (before standardisation)


def collect(paths: Sequence[str | Path], key: str = "INPUT") -> list[Path]:
    """The input files in paths, folders expanded to their images (sorted); every missing or unknown one at once."""
    files, problems = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files.extend(found)
            if not found:
                problems.append(
                    f"{key} = {path}: a folder with no image files ({', '.join(IMAGE_SUFFIXES)}) in it; type {KINDS}"
                )
        elif not path.is_file():
            problems.append(f"{key} = {path}: no such file or folder; type {KINDS}")
        elif path.suffix.lower() not in (*IMAGE_SUFFIXES, ".csv", *TENSOR_SUFFIXES):
            problems.append(
                f"{key} = {path}: not a kind of file dlrun reads ({path.suffix or 'no suffix'}); type {KINDS}"
            )
        else:
            files.append(path)
    if problems:
        raise ConfigError(*problems)
    if not files:
        raise ConfigError(f"{key}: no inputs given; type {KINDS}")
    return files


def read(
    paths: Sequence[str | Path],
    *,
    in_shape: Sequence[int],
    pixel_max: float = 1.0,
    resampling: str = "bilinear",
    invert: bool = False,
    key: str = "INPUT",
) -> Inputs:
    """Every input in paths (folders, image files, CSV, .npy, .pt), as one batch of in_shape.

    Image files become pixel / 255 * pixel_max, shrunk with `resampling` (bilinear or box) and enlarged bilinearly.
    """
    import torch

    in_shape = tuple(in_shape)
    names: list[str] = []
    parts: list[Tensor] = []
    images: list[Path] = []  # consecutive images are stacked together

    def flush_images() -> None:
        if images:
            names.extend(str(image) for image in images)
            parts.append(
                torch.stack([read_image(image, in_shape, pixel_max, resampling, invert, key) for image in images])
            )
            images.clear()

    for path in collect(paths, key):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            images.append(path)
            continue
        flush_images()
        if suffix == ".csv":
            row_names, values = read_csv(path, in_shape, key)
        else:
            values = read_tensor_file(path, in_shape, key)
            row_names = [f"{path}[{index}]" for index in range(len(values))]
        names.extend(row_names)
        parts.append(values)
    flush_images()
    return Inputs(names=names, values=torch.cat(parts))

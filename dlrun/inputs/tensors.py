"""A .npy or .pt tensor file as inputs: shape [N, *in_shape] (N inputs) or [*in_shape] (one input), in training
units."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from dlrun.errors import ConfigError, first_line
from dlrun.inputs.messages import describe_shape

if TYPE_CHECKING:
    from torch import Tensor

TENSOR_SUFFIXES = (".npy", ".pt", ".pth")


def read_tensor_file(path: Path, in_shape: tuple[int, ...], key: str) -> Tensor:
    """The inputs [N, *in_shape] in path (np.save or torch.save of one plain numeric tensor)."""
    return _fit_shape(_read_tensor(path, key), in_shape, path, key)


def _read_tensor(path: Path, key: str) -> Tensor:
    import numpy as np
    import torch

    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, ValueError) as error:
        raise ConfigError(
            f"{key} = {path}: refused or unreadable ({first_line(error)}); type a file holding one plain numeric "
            "tensor (np.save(path, array) or torch.save(tensor, path))"
        ) from error
    except Exception as error:  # numpy and torch fail on a damaged file with many exception types
        raise ConfigError(
            f"{key} = {path}: not a readable tensor file, truncated or corrupt ({first_line(error)}); type a file "
            "written by np.save or torch.save"
        ) from error
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "biuf":
            raise ConfigError(f"{key} = {path}: holds {array.dtype} values; type a file of numbers")
        return torch.from_numpy(array.astype(np.float32))
    if not isinstance(array, torch.Tensor):
        raise ConfigError(
            f"{key} = {path}: holds a {type(array).__name__}, not a tensor; save the tensor itself: "
            "torch.save(inputs, path)"
        )
    if array.is_complex():
        raise ConfigError(f"{key} = {path}: holds complex values; type a file of real numbers")
    return array.float()


def _fit_shape(values: Tensor, in_shape: tuple[int, ...], path: Path, key: str) -> Tensor:
    """[N, *in_shape] as it is, [*in_shape] as one input; anything else is a mistake."""
    if tuple(values.shape) == in_shape:
        return values.unsqueeze(0)
    if values.dim() == len(in_shape) + 1 and tuple(values.shape[1:]) == in_shape:
        if len(values) == 0:
            raise ConfigError(f"{key} = {path}: holds no inputs (shape {list(values.shape)}); type a non-empty file")
        return values
    expected = ", ".join(str(size) for size in in_shape)
    raise ConfigError(
        f"{key} = {path}: shape {list(values.shape)} does not fit the model, which takes {describe_shape(in_shape)}; "
        f"type a tensor of shape [N, {expected}] (N inputs) or [{expected}] (one input)"
    )

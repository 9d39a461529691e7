"""Image files as inputs: converted to the dataset's channels (1: greyscale, 3: RGB), resized to its height and
width, and scaled to the training pixel range: 0..16 for scikit-learn's digits (its 8x8 images count ink in 4x4
blocks of a 32x32 bitmap, so they are shrunk by box averaging), 0..1 (pixel / 255, resized bilinearly as
dlrun/data/folders.py reads images) for the torchvision and folder datasets. Light strokes on a dark background, as
in digits and MNIST; `invert` flips dark-on-light scans."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dlrun.errors import ConfigError, first_line
from dlrun.inputs.messages import describe_shape

if TYPE_CHECKING:
    from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# How an image file is shrunk for datasets whose images were not resized bilinearly (digits: box averaging).
IMAGE_RESAMPLING = {("dlrun.data.embedded.load", "digits"): "box"}


def read_image(
    path: Path, in_shape: tuple[int, ...], pixel_max: float, resampling: str, invert: bool, key: str
) -> Tensor:
    """One image file as an input of in_shape: pixel / 255 * pixel_max, shrunk with `resampling` (bilinear or
    box) and enlarged bilinearly."""
    import numpy as np
    import torch
    from PIL import Image

    if len(in_shape) != 3 or in_shape[0] not in (1, 3):
        raise ConfigError(
            f"{key} = {path}: an image file, but the model takes {describe_shape(in_shape)}; type a .csv, .npy "
            f"or .pt file of inputs of shape {list(in_shape)}"
        )
    channels, height, width = in_shape
    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise ConfigError(
            f"{key} = {path}: cannot be read as an image ({first_line(error)}); replace it with a readable PNG "
            "or JPEG file, or remove it"
        ) from error
    if image.size != (width, height):
        shrinking = image.width >= width and image.height >= height
        box = shrinking and resampling == "box"
        image = image.resize((width, height), Image.Resampling.BOX if box else Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    pixels = pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)
    values = pixels * (pixel_max / 255.0)
    return pixel_max - values if invert else values

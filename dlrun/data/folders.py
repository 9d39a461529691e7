"""Images in one folder per class, the layout of torchvision's ImageFolder:

  root/<class>/*.png|jpg|...                      split into train/val/test by val_fraction and test_fraction, or
  root/train/<class>/...  [root/val/<class>/...]  [root/test/<class>/...]   where a missing val/ or test/ is
                                                                             held out of train/ by its fraction.
In memory (dataset.storage, auto where the images fit) every image is read once, in threads, converted to in_shape's
channels (1: grey, 3: RGB), resized to the size the model sees (dataset.transforms.resize where it is set, else
in_shape's height and width: images.read_shape) and kept as a tensor; streamed, each image is read when a
DataLoader worker needs it (dlrun/data/streaming.py), so that a folder of any size trains in bounded memory.
Nothing is written into root.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dlrun.data.image_listing import SPLIT_FOLDERS, check_classes, check_root, list_images
from dlrun.data.images import has_per_sample, image_data_module, image_stream_module, read_shape
from dlrun.data.module import Splits
from dlrun.data.splits import hold_out_splits
from dlrun.data.storage import in_memory
from dlrun.data.streaming import MODES, UNREADABLE, FileImages, pil_pixels
from dlrun.errors import ConfigError

BYTES_PER_VALUE = 10  # in memory, at the peak (measured): float32 values and their standardised copy, uint8 reading


def load(
    *,
    name: str = "image_folder",  # the dataset option, as config messages name it
    root: str | None,
    in_shape: Sequence[int],
    num_classes: int | str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    normalize: bool = True,
    transforms: dict | None = None,
    storage: str = "auto",
    unreadable: str = "skip",
    seed: int = 0,
) -> Splits:
    root_dir = check_root(root)
    check_image_settings(in_shape, unreadable)
    listed = list_images(root_dir)
    class_names = sorted({label for files in listed.values() for _, label in files})
    check_classes(root_dir, listed, class_names, num_classes)
    index = {name: i for i, name in enumerate(class_names)}
    labels = {split: np.array([index[label] for _, label in files], dtype=np.int64) for split, files in listed.items()}
    chosen = hold_out_splits(labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed)
    paths = {split: [listed[origin][i][0] for i in indices] for split, (origin, indices) in chosen.items()}
    split_labels = {split: labels[origin][indices] for split, (origin, indices) in chosen.items()}
    images = sum(len(files) for files in listed.values())
    per_sample = "dataset.transforms.per_sample works on images decoded one at a time"
    shape = read_shape(in_shape, transforms)
    nbytes = images * int(np.prod(shape)) * BYTES_PER_VALUE
    if not in_memory(storage, nbytes=nbytes, stream_only=per_sample if has_per_sample(transforms) else None):
        sources = {split: (FileImages(paths[split]), split_labels[split]) for split in SPLIT_FOLDERS}
        return image_stream_module(
            sources,
            in_shape=in_shape,
            normalize=normalize,
            transforms=transforms,
            unreadable=unreadable,
            class_names=class_names,
            seed=seed,
        )
    xs = [_read_all(paths[split], shape).float().div_(255) for split in SPLIT_FOLDERS]
    ys = [torch.as_tensor(split_labels[split]) for split in SPLIT_FOLDERS]
    return image_data_module(
        xs, ys, in_shape=shape, normalize=normalize, transforms=transforms, class_names=class_names
    )


def check_image_settings(in_shape: Sequence[int], unreadable: str) -> None:
    if len(in_shape) != 3 or in_shape[0] not in MODES:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: type [channels, height, width] with 1 (grey) or 3 (colour) "
            "channels, e.g. dataset.in_shape=[3,64,64]"
        )
    if unreadable not in UNREADABLE:
        raise ConfigError(f"dataset.unreadable = {unreadable}: type one of {', '.join(UNREADABLE)}")


def _read_all(paths: list[Path], in_shape: Sequence[int]) -> torch.Tensor:
    """uint8 images (N, C, H, W); decoding runs in threads (PIL releases the GIL)."""
    channels, height, width = in_shape
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda path: _read_image(path, MODES[channels], (width, height)), paths))
    stacked = np.stack(images) if images else np.zeros((0, height, width, channels), dtype=np.uint8)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def _read_image(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import UnidentifiedImageError

    try:
        return pil_pixels(path, mode, size)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ConfigError(
            f"dataset.root: {path} cannot be read as an image ({type(error).__name__}: {error}); "
            "replace or delete the file, or stream the folder (dataset.storage=stream) to skip such files"
        ) from error

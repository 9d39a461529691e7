"""Images read one at a time, for splits larger than memory: decoded and transformed in DataLoader workers.

An ImageSamples split reads image i's bytes from its source (a file of an image folder, a row of packed shards),
decodes it and applies the per-sample transforms (torchvision.transforms.v2, dataset.transforms.per_sample) in a
worker; the batch crosses to the main process as uint8 pixels, a quarter of the bytes of floats, and is made floats
in [0, 1] and normalised there, whole (ImageSamples.finish: the same arithmetic as per image, so the same values).
The random draws of sample i in epoch e are seeded by (seed, e, i): the same whichever worker reads it, and again
after a resume. An image that cannot be read comes back as Unreadable: its batch goes on without it
and the DataModule names and counts it (dataset.unreadable=skip), or the run stops naming it (stop).
"""

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dlrun.errors import ConfigError

MODES = {1: "L", 3: "RGB"}  # channels -> the PIL mode images are converted to
UNREADABLE = ("skip", "stop")  # dataset.unreadable: what an image that cannot be decoded does
log = logging.getLogger("dlrun.data")


class ImageSource(Protocol):
    """Where a split's encoded images are: read(i) gives image i's bytes, name(i) what messages call it."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> bytes: ...

    def name(self, index: int) -> str: ...


@dataclass(frozen=True)
class FileImages:
    """Images in files, one path each."""

    paths: Sequence[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> bytes:
        return Path(self.paths[index]).read_bytes()

    def name(self, index: int) -> str:
        return str(self.paths[index])


@dataclass(frozen=True)
class Unreadable:
    """A sample that could not be read, in place of the sample."""

    name: str
    reason: str


def report_unreadable(seen: dict[str, str], sample: Unreadable) -> None:
    """Name a skipped sample once (in dlrun.log and on the terminal) and count it in `seen`."""
    if sample.name in seen:
        return
    seen[sample.name] = sample.reason
    log.warning(
        "skipped %s: cannot be read as an image (%s); %d skipped so far; dataset.unreadable=stop stops instead",
        sample.name,
        sample.reason,
        len(seen),
    )


def pil_image(file, mode: str, size: tuple[int, int] | None):
    """An image file (path or file object) as a decoded PIL image in mode, resized to size = (width, height)."""
    from PIL import Image

    with Image.open(file) as image:
        image = image.convert(mode)
    return image if size is None else image.resize(size, Image.Resampling.BILINEAR)


def pil_pixels(file, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """The same image as uint8 pixels (H, W[, C])."""
    return np.array(pil_image(file, mode, size))


def as_chw(image) -> Tensor:
    """A PIL image or (C, H, W) tensor as a (C, H, W) tensor."""
    if isinstance(image, Tensor):
        return image
    tensor = torch.from_numpy(np.array(image))
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()  # contiguous: faster after


class Decoder:
    """Encoded bytes to a PIL image in the channels' mode: resized to `size` (H, W) when given, as the in-memory
    path reads images (bilinear), so that both paths see the same pixels; at full size otherwise, for the per-sample
    transforms, which get it as torchvision's ImageFolder gives it."""

    def __init__(self, channels: int, size: Sequence[int] | None):
        self.mode = MODES[channels]
        self.size = None if size is None else (int(size[1]), int(size[0]))  # PIL's (width, height)

    def __call__(self, data: bytes):
        return pil_image(io.BytesIO(data), self.mode, self.size)


class ImageSamples(Dataset):
    """A split of images read on access: image after the per-sample transform (uint8 pixels, or floats where the
    transform made floats) and its label; `finish` makes a batch of them model inputs. Keys are
    epoch * len + index (module.EpochBatches), so that each draw is seeded by (seed, epoch, index)."""

    def __init__(
        self,
        source: ImageSource,
        labels: Sequence[int],
        *,
        decode: Decoder,
        transform: Callable[[Tensor], Tensor] | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        seed: int = 0,
        unreadable: str = "skip",
    ):
        self.source, self.labels = source, [int(label) for label in labels]
        self.decode, self.transform = decode, transform
        self.mean, self.std = mean, std
        self.seed, self.stop_on_unreadable = seed, unreadable == "stop"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int) -> tuple[Tensor, int] | Unreadable:
        epoch, index = divmod(int(key), len(self))
        try:
            image = self.decode(self.source.read(index))
        except (OSError, ValueError, RuntimeError) as error:  # PIL's UnidentifiedImageError is an OSError
            reason = f"{type(error).__name__}: {error}"
            if self.stop_on_unreadable:
                raise ConfigError(
                    f"dataset.root: {self.source.name(index)} cannot be read as an image ({reason}); replace or delete "
                    "it, or type dataset.unreadable=skip to train without it"
                ) from error
            return Unreadable(self.source.name(index), reason)
        return self.transformed(image, epoch, index), self.labels[index]

    def transformed(self, image, epoch: int, index: int) -> Tensor:
        """The per-sample transform's output (a PIL image or tensor) as a (C, H, W) tensor."""
        if self.transform is None:
            return as_chw(image)
        seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            # The CPU generator only: torch.manual_seed would also queue seeds for CUDA, costing ~1 ms an image.
            torch.default_generator.manual_seed(seed)
            return as_chw(self.transform(image))

    def finish(self, images: Tensor) -> Tensor:
        """A batch (N, C, H, W) of samples as floats in [0, 1], normalised with the split's mean and std."""
        pixels = to_unit(images)
        return pixels if self.mean is None else pixels.sub_(self.mean).div_(self.std)

    def pixels(self, index: int) -> Tensor:
        """Image `index` as this split's transform makes it, in [0, 1]: what the statistics are taken of."""
        return to_unit(self.transformed(self.decode(self.source.read(index)), epoch=0, index=index))


def to_unit(image: Tensor) -> Tensor:
    """uint8 pixels to floats in [0, 1]; floats (a transform that scaled them) as they are."""
    return image.float().div_(255) if not image.is_floating_point() else image.float().clone()

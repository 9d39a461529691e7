"""Image transforms applied to whole batches on the training device, drawn anew for every image.

The eval transform (val and test batches) only resizes; the train transform resizes, then augments: random crop
with padding, horizontal flip, rotation, colour jitter and random erasing. Stored images are already normalised
with the training split's statistics, so the colour and geometry operations undo that normalisation, work on pixel
values in [0, max_value], and normalise again; random erasing comes last, as torchvision's does, and blanks to 0
(the mean colour). With nothing configured there is no transform at all: batches stay plain tensor indexing.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from dlrun.data.mixing import MIX_KEYS
from dlrun.errors import ConfigError

ERASE_AREA = (0.02, 0.33)  # share of the image a random erasing covers (torchvision's defaults)
ERASE_RATIO = (0.3, 3.3)  # its aspect ratio, height / width
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class Augmentation:
    """The random training augmentations; each 0 disables one."""

    crop_padding: int = 0  # pad by this many pixels, crop back to the size at a random offset
    horizontal_flip: float = 0.0  # probability of mirroring
    rotation: float = 0.0  # maximal angle in degrees, either way
    brightness: float = 0.0  # colour jitter factors drawn from [1 - x, 1 + x]
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # shift drawn from [-hue, hue], as a fraction of the colour wheel
    random_erasing: float = 0.0  # probability of blanking a random rectangle

    @property
    def active(self) -> bool:
        return any(getattr(self, item.name) for item in fields(self))

    @property
    def geometric(self) -> bool:
        return bool(self.crop_padding or self.rotation)

    @property
    def colour(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue)


def parse_size(resize, key: str = "dataset.transforms.resize") -> tuple[int, int] | None:
    """null, one side, or [height, width] as (height, width)."""
    if resize is None:
        return None
    sides = [resize] if isinstance(resize, int) else list(resize) if isinstance(resize, Sequence) else []
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides):
        raise ConfigError(f"{key} = {resize}: type one side or [height, width] in pixels, e.g. {key}=[64,64], or null")
    return tuple(sides)


def resized_shape(in_shape: Sequence[int], resize) -> list[int]:
    """The shape (C, H, W) a model receives from images of in_shape after the resize transform."""
    size = parse_size(resize)
    if size is None or len(in_shape) != 3:
        return list(in_shape)
    return [in_shape[0], *size]


def image_transforms(
    config: Mapping | None,
    *,
    in_shape: Sequence[int],
    mean: Tensor | None,
    std: Tensor | None,
    max_value: float = 1.0,
) -> tuple["BatchTransform | None", "BatchTransform | None"]:
    """(train transform, eval transform) from the dataset.transforms config; None where there is nothing to do."""
    config = dict(config or {})
    unknown = sorted(set(config) - {"resize", "train", "per_sample"})  # per_sample: streamed images (images.py)
    if unknown:
        raise ConfigError(f"dataset.transforms.{unknown[0]}: unknown key; the keys are resize, train.*, per_sample.*")
    size = parse_size(config.get("resize"))
    if size == tuple(in_shape[-2:]):
        size = None
    augmentation = _augmentation(config.get("train") or {}, channels=in_shape[0])
    common = {"size": size, "mean": mean, "std": std, "max_value": max_value}
    eval_transform = BatchTransform(**common) if size else None
    train_transform = BatchTransform(**common, augmentation=augmentation) if size or augmentation.active else None
    return train_transform, eval_transform


def _augmentation(settings: Mapping, *, channels: int) -> Augmentation:
    """The per-image augmentations of dataset.transforms.train; its Mixup and CutMix mix batches (mixing.py)."""
    names = [item.name for item in fields(Augmentation)]
    settings = {name: value for name, value in settings.items() if name not in MIX_KEYS}
    unknown = sorted(set(settings) - set(names))
    if unknown:
        keys = ", ".join([*names, *MIX_KEYS])
        raise ConfigError(f"dataset.transforms.train.{unknown[0]}: unknown augmentation; the keys are {keys}")
    problems = []
    for name, value in settings.items():
        key = f"dataset.transforms.train.{name}"
        if not isinstance(value, int | float) or value < 0:
            problems.append(f"{key} = {value}: must be a number >= 0; type {key}=0 to disable it")
        elif name in ("horizontal_flip", "random_erasing") and value > 1:
            problems.append(f"{key} = {value}: a probability, between 0 and 1; type {key}=0.5")
        elif name == "hue" and value > 0.5:
            problems.append(f"{key} = {value}: at most 0.5 (half the colour wheel); type {key}=0.1")
        elif name == "crop_padding" and value != int(value):
            problems.append(f"{key} = {value}: whole pixels; type {key}=4")
        elif name in ("saturation", "hue") and value and channels != 3:
            problems.append(f"{key} = {value}: needs colour images, these have {channels} channel(s); type {key}=0")
    if problems:
        raise ConfigError(*problems)
    return Augmentation(**{name: value for name, value in settings.items()})


class BatchTransform:
    """Resize and augment a batch of normalised images (N, C, H, W), each image with its own random draws."""

    def __init__(
        self,
        *,
        size: tuple[int, int] | None = None,
        augmentation: Augmentation | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        max_value: float = 1.0,
    ):
        self.size = size
        self.augmentation = augmentation or Augmentation()
        self.mean, self.std = mean, std
        self.max_value = max_value

    def __repr__(self) -> str:
        return f"BatchTransform(size={self.size}, augmentation={self.augmentation})"

    def __call__(self, images: Tensor) -> Tensor:
        if self.size is not None and tuple(images.shape[-2:]) != self.size:
            images = F.interpolate(images, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        augmentation = self.augmentation
        if augmentation.geometric or augmentation.horizontal_flip or augmentation.colour:
            pixels = self._pixels(images)
            if augmentation.geometric:
                pixels = self._crop_and_rotate(pixels)
            if augmentation.horizontal_flip:
                flip = torch.rand(len(pixels), device=pixels.device) < augmentation.horizontal_flip
                pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
            if augmentation.colour:
                pixels = self._jitter(pixels)
            images = self._normalised(pixels)
        if augmentation.random_erasing:
            images = self._erase(images)
        return images

    # -- between normalised values and pixels in [0, 1] ---------------------------------------------

    def _pixels(self, images: Tensor) -> Tensor:
        if self.mean is not None:
            images = images * self.std.to(images.device) + self.mean.to(images.device)
        return images / self.max_value

    def _normalised(self, pixels: Tensor) -> Tensor:
        images = pixels * self.max_value
        if self.mean is not None:
            images = (images - self.mean.to(images.device)) / self.std.to(images.device)
        return images

    # -- the augmentations ------------------------------------------------------------------------

    def _crop_and_rotate(self, pixels: Tensor) -> Tensor:
        """A random shift of up to crop_padding pixels (what a padded random crop is) and a random rotation, in one
        resampling; uncovered pixels are black, as in a zero-padded crop."""
        count, _, height, width = pixels.shape
        device = pixels.device
        padding, degrees = self.augmentation.crop_padding, self.augmentation.rotation
        angle = (torch.rand(count, device=device) * 2 - 1) * math.radians(degrees)
        shift_x = torch.randint(-padding, padding + 1, (count,), device=device).float()
        shift_y = torch.randint(-padding, padding + 1, (count,), device=device).float()
        cos, sin = angle.cos(), angle.sin()
        # affine_grid works in [-1, 1] coordinates on each axis: a rotation in pixels scales its off-diagonal terms.
        theta = torch.stack(
            [
                torch.stack([cos, -sin * height / width, 2 * shift_x / width], dim=1),
                torch.stack([sin * width / height, cos, 2 * shift_y / height], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
        return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _jitter(self, pixels: Tensor) -> Tensor:
        """Brightness, contrast, saturation, hue, in that order, each factor drawn per image."""
        augmentation = self.augmentation
        if augmentation.brightness:
            pixels = (pixels * self._factors(pixels, augmentation.brightness)).clamp(0, 1)
        if augmentation.contrast:
            mean = _grey(pixels).mean(dim=(1, 2, 3), keepdim=True)
            pixels = _blend(pixels, mean, self._factors(pixels, augmentation.contrast))
        if augmentation.saturation:
            pixels = _blend(pixels, _grey(pixels), self._factors(pixels, augmentation.saturation))
        if augmentation.hue:
            shift = (torch.rand(len(pixels), 1, 1, device=pixels.device) * 2 - 1) * augmentation.hue
            hue, saturation, value = _rgb_to_hsv(pixels)
            pixels = _hsv_to_rgb((hue + shift) % 1.0, saturation, value)
        return pixels

    @staticmethod
    def _factors(pixels: Tensor, spread: float) -> Tensor:
        low, high = max(0.0, 1 - spread), 1 + spread
        return (low + torch.rand(len(pixels), 1, 1, 1, device=pixels.device) * (high - low)).to(pixels.dtype)

    def _erase(self, images: Tensor) -> Tensor:
        """Blank one random rectangle of 2-33% of the area in each chosen image (torchvision's RandomErasing)."""
        count, _, height, width = images.shape
        device = images.device
        chosen = torch.rand(count, device=device) < self.augmentation.random_erasing
        area = height * width * torch.empty(count, device=device).uniform_(*ERASE_AREA)
        ratio = torch.empty(count, device=device).uniform_(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])).exp()
        box_h = (area * ratio).sqrt().round().clamp(1, height)
        box_w = (area / ratio).sqrt().round().clamp(1, width)
        top = (torch.rand(count, device=device) * (height - box_h + 1)).floor()
        left = (torch.rand(count, device=device) * (width - box_w + 1)).floor()
        rows = torch.arange(height, device=device)[None, :, None]
        cols = torch.arange(width, device=device)[None, None, :]
        inside = (
            (rows >= top[:, None, None])
            & (rows < (top + box_h)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + box_w)[:, None, None])
        )
        return images.masked_fill((inside & chosen[:, None, None])[:, None], 0.0)


def _grey(pixels: Tensor) -> Tensor:
    if pixels.shape[1] != 3:
        return pixels.mean(dim=1, keepdim=True)
    weights = torch.tensor(GREY_WEIGHTS, device=pixels.device, dtype=pixels.dtype)
    return (pixels * weights[None, :, None, None]).sum(dim=1, keepdim=True)


def _blend(pixels: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * pixels + (1 - factor) * other, clamped to [0, 1]: factor 1 leaves the image as it is."""
    return (other + factor * (pixels - other)).clamp(0, 1)


def _rgb_to_hsv(pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue in [0, 1), saturation and value of RGB pixels in [0, 1], each (N, H, W)."""
    red, green, blue = pixels.unbind(dim=1)
    value, _ = pixels.max(dim=1)
    chroma = value - pixels.min(dim=1).values
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(
        value == red,
        ((green - blue) / safe) % 6,
        torch.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    return hue, saturation, value


def _hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """The inverse of _rgb_to_hsv: (N, 3, H, W) in [0, 1]."""
    sector = hue * 6
    channels = []
    for offset in (5, 3, 1):  # red, green, blue
        k = (offset + sector) % 6
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=1)

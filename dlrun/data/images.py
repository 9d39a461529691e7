"""Image splits, in memory or streamed: per-channel standardisation with the training split's
statistics, the per-batch transforms and Mixup/CutMix, and for streamed images the per-sample ones."""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from dlrun.data.mixing import batch_mix
from dlrun.data.module import SPLITS, Splits
from dlrun.data.spec import DataSpec
from dlrun.data.splits import standardize
from dlrun.data.streaming import Decoder, ImageSamples, ImageSource
from dlrun.data.transforms import image_transforms, parse_size, resized_shape
from dlrun.errors import ConfigError

STATS_SAMPLES = 256  # streamed: the training images (at most) whose pixels give the mean and std


def image_data_module(
    xs: list[Tensor],
    ys: list[Tensor],
    *,
    in_shape: Sequence[int],
    normalize: bool,
    transforms: Mapping | None,
    class_names: list[str],
    pixel_max: float = 1.0,
) -> Splits:
    """The train, val and test images (float, 0..pixel_max) and labels."""
    transforms = dict(transforms or {})
    if _per_sample(transforms.pop("per_sample", None)):
        raise ConfigError(
            "dataset.transforms.per_sample: these images are held in memory, already decoded; use "
            "dataset.transforms.train.* for them, or stream them (dataset=image_folder dataset.storage=stream)"
        )
    input_mean = input_std = None
    if normalize:
        xs, input_mean, input_std = standardize(*xs, dims=(0, 2, 3))
    splits = list(zip(xs, ys, strict=True))
    return _with_batch_transforms(splits, transforms, in_shape, input_mean, input_std, pixel_max, class_names)


def image_stream_module(
    sources: dict[str, tuple[ImageSource, Sequence[int]]],
    *,
    in_shape: Sequence[int],
    normalize: bool,
    transforms: Mapping | None,
    unreadable: str,
    class_names: list[str],
    seed: int,
) -> Splits:
    """Streamed train, val and test images: (source, labels) each, their random draws seeded by seed.
    Without per-sample transforms every image is decoded at the size the model sees (read_shape, as the in-memory
    path reads it); with them at full size, then transformed, and the eval transform must give in_shape. The mean
    and std are those of up to STATS_SAMPLES training images as eval sees them, unless dataset.transforms.per_sample
    gives them."""
    shape = read_shape(in_shape, transforms)
    transforms = dict(transforms or {})
    per_sample = _per_sample(transforms.pop("per_sample", None))
    channels = in_shape[0]
    train_transform, eval_transform = (_compose(per_sample.get(which)) for which in ("train", "eval"))
    decode = Decoder(channels, None if train_transform or eval_transform else shape[1:])

    def samples(split: str, transform, mean=None, std=None) -> ImageSamples:
        source, labels = sources[split]
        common = {"decode": decode, "seed": seed, "unreadable": unreadable}
        return ImageSamples(source, labels, transform=transform, mean=mean, std=std, **common)

    eval_view = samples("train", eval_transform)
    _check_shape(eval_view, shape, "dataset.transforms.per_sample.eval")
    _check_shape(samples("train", train_transform), shape, "dataset.transforms.per_sample.train")
    mean, std = _statistics(eval_view, per_sample, channels) if normalize else (None, None)
    splits = [samples(split, train_transform if split == "train" else eval_transform, mean, std) for split in SPLITS]
    return _with_batch_transforms(splits, transforms, shape, mean, std, 1.0, class_names)


def read_shape(in_shape: Sequence[int], transforms: Mapping | None) -> list[int]:
    """The shape (C, H, W) image files are decoded at: the size dataset.transforms.resize gives batches, where it is
    set and there are no per-sample transforms, so that the model sees each file's own pixels at that size rather
    than in_shape's upsampled; in_shape otherwise (the per-sample eval transform makes in_shape)."""
    if has_per_sample(transforms):
        return list(in_shape)
    return resized_shape(in_shape, (transforms or {}).get("resize"))


def _with_batch_transforms(splits: list, transforms: dict, in_shape, mean, std, pixel_max, class_names) -> Splits:
    """The splits with the per-batch transforms and Mixup/CutMix; the model sees images of in_shape, resized where
    they resize (and are not that size already: then new inputs at prediction are read at that size too, as these
    were)."""
    train_transform, eval_transform = image_transforms(
        transforms, in_shape=in_shape, mean=mean, std=std, max_value=pixel_max
    )
    train_mix = batch_mix(transforms.get("train") or {}, num_classes=len(class_names))
    resize = parse_size(transforms.get("resize"))
    if resize == tuple(in_shape[-2:]):
        resize = None
    spec = DataSpec(in_shape=resized_shape(in_shape, resize), class_names=class_names, pixel_max=pixel_max)
    return Splits(
        *splits,
        spec=spec,
        input_mean=mean,
        input_std=std,
        train_transform=train_transform,
        eval_transform=eval_transform,
        train_mix=train_mix,
        resize=None if resize is None else list(resize),
    )


def has_per_sample(transforms: Mapping | None) -> bool:
    """Whether dataset.transforms sets per-sample transforms (which only streamed images can take)."""
    per_sample = _per_sample((transforms or {}).get("per_sample"))
    return bool(per_sample.get("train") or per_sample.get("eval"))


def _per_sample(config: Mapping | None) -> dict:
    config = dict(config or {})
    unknown = sorted(set(config) - {"train", "eval", "mean", "std"})
    if unknown:
        key = f"dataset.transforms.per_sample.{unknown[0]}"
        raise ConfigError(f"{key}: unknown key; the keys are train, eval, mean, std")
    return {key: value for key, value in config.items() if value}


def _compose(transforms: list | None):
    if not transforms:
        return None
    from torchvision.transforms import v2

    return v2.Compose(list(transforms))


def _check_shape(samples: ImageSamples, in_shape: Sequence[int], key: str) -> None:
    """The first readable training image, transformed, must have in_shape: the model is built for it."""
    for index in range(min(len(samples), 16)):
        sample = samples[index]
        if isinstance(sample, tuple):
            shape = list(sample[0].shape)
            if shape != list(in_shape):
                raise ConfigError(
                    f"{key} makes images of shape {shape}, dataset.in_shape is {list(in_shape)}; type "
                    f"dataset.in_shape=[{','.join(map(str, shape))}] or change the transforms' sizes"
                )
            return
    raise ConfigError(f"dataset.root: none of the first {min(len(samples), 16)} training images can be read")


def _statistics(samples: ImageSamples, per_sample: dict, channels: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (C, 1, 1): given, or measured on up to STATS_SAMPLES training images in order
    (all of them, on a small dataset: then the same figures as the in-memory path's)."""
    given = [per_sample.get(name) for name in ("mean", "std")]
    if any(given):
        if not all(given) or any(len(values) != channels for values in given):
            raise ConfigError(
                f"dataset.transforms.per_sample.mean and .std: give both, {channels} value(s) each, or neither "
                "(to measure them)"
            )
        return tuple(torch.tensor(values, dtype=torch.float32).reshape(channels, 1, 1) for values in given)
    count = len(samples)
    chosen = range(count)
    if count > STATS_SAMPLES:
        chosen = np.sort(np.random.default_rng(0).choice(count, STATS_SAMPLES, replace=False)).tolist()
    images = []
    for index in chosen:
        try:
            images.append(samples.pixels(index))
        except (OSError, ValueError, RuntimeError):
            continue  # an unreadable image is named when training reaches it
    stacked = torch.stack(images)
    return stacked.mean(dim=(0, 2, 3), keepdim=True)[0], stacked.std(dim=(0, 2, 3), keepdim=True)[0].clamp_min(1e-8)

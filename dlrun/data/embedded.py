"""The real datasets that ship inside scikit-learn: they work offline."""

from collections.abc import Sequence

import numpy as np
import sklearn.datasets

from dlrun.data.images import image_data_module
from dlrun.data.mixing import refuse_without_images
from dlrun.data.module import Splits
from dlrun.data.spec import DataSpec
from dlrun.data.splits import as_tensors, split_indices, standardize
from dlrun.errors import ConfigError

DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
PIXEL_MAX = {"digits": 16.0}  # the image datasets' brightest pixel value, for the colour augmentations


def load(
    *,
    name: str,
    in_shape: Sequence[int],
    num_classes: int | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int = 0,
    normalize: bool = True,
    transforms: dict | None = None,
) -> Splits:
    if name not in DATASETS:
        raise ConfigError(
            f"dataset.name = {name}: not a bundled scikit-learn dataset; type one of {', '.join(DATASETS)}"
        )
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    inputs, targets = bunch.data, bunch.target
    classification = num_classes is not None
    # digits' images, one grey channel (what its transforms read); the tables' features
    shape = [1, *bunch.images.shape[1:]] if hasattr(bunch, "images") else [inputs.shape[1]]
    _check_matches(name, inputs, targets, in_shape, num_classes, shape)
    train, val, test = split_indices(
        targets, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed, stratify=classification
    )
    splits = [as_tensors(inputs[i], targets[i], classification=classification) for i in (train, val, test)]
    xs = [x.reshape(len(x), *in_shape) for x, _ in splits]
    ys = [y for _, y in splits]
    target_mean = target_std = None
    if normalize and not classification:
        ys, target_mean, target_std = standardize(*ys, dims=(0,))
    class_names = [str(c) for c in getattr(bunch, "target_names", [])] if classification else []
    if len(in_shape) == 3:  # digits: one mean and std per channel, and the image transforms
        return image_data_module(
            xs,
            ys,
            in_shape=in_shape,
            normalize=normalize,
            transforms=transforms,
            class_names=class_names,
            pixel_max=PIXEL_MAX.get(name, 1.0),
        )
    if transforms:
        refuse_without_images(transforms, f"{name} holds no images (a table)")
        raise ConfigError(f"dataset.transforms: {name} holds no images; type dataset.transforms=null")
    input_mean = input_std = None
    if normalize:  # tabular features: one mean and std each
        xs, input_mean, input_std = standardize(*xs, dims=(0,))
    spec = DataSpec(in_shape=list(in_shape), class_names=class_names, target_mean=target_mean, target_std=target_std)
    return Splits(*zip(xs, ys, strict=True), spec=spec, input_mean=input_mean, input_std=input_std)


def _check_matches(
    name: str,
    inputs: np.ndarray,
    targets: np.ndarray,
    in_shape: Sequence[int],
    num_classes: int | None,
    shape: list[int],
) -> None:
    features = int(np.prod(in_shape))
    if features != inputs.shape[1]:
        raise ConfigError(
            f"dataset.in_shape = {list(in_shape)}: {name} has {inputs.shape[1]} features per sample; "
            f"type dataset.in_shape=[{','.join(map(str, shape))}]"
        )
    if num_classes is not None and num_classes != len(np.unique(targets)):
        raise ConfigError(
            f"dataset.num_classes = {num_classes}: {name} has {len(np.unique(targets))} classes; "
            f"type dataset.num_classes={len(np.unique(targets))}"
        )

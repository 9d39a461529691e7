"""Image splits as a DataModule: per-channel standardisation with the training split's statistics, and transforms."""

from collections.abc import Mapping, Sequence

from torch import Tensor

from dlrun.data.module import DataModule
from dlrun.data.splits import standardize
from dlrun.data.transforms import image_transforms, parse_size


def image_data_module(
    xs: list[Tensor],
    ys: list[Tensor],
    *,
    in_shape: Sequence[int],
    normalize: bool,
    transforms: Mapping | None,
    max_value: float = 1.0,
    **fields,
) -> DataModule:
    """The train, val and test images (float, 0..max_value) and labels; `fields` are DataModule's other fields."""
    input_mean = input_std = None
    if normalize:
        xs, input_mean, input_std = standardize(*xs, dims=(0, 2, 3))
    train_transform, eval_transform = image_transforms(
        transforms, in_shape=in_shape, mean=input_mean, std=input_std, max_value=max_value
    )
    return DataModule(
        *zip(xs, ys, strict=True),
        input_mean=input_mean,
        input_std=input_std,
        train_transform=train_transform,
        eval_transform=eval_transform,
        resize=parse_size((transforms or {}).get("resize")),
        **fields,
    )

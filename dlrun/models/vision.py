"""torchvision's architectures, built by torchvision's own builders and adapted to the dataset's images."""

from collections.abc import Sequence

from torch import nn

from dlrun.errors import ConfigError
from dlrun.models.layers import image_shape

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SMALL_IMAGE = 64  # below this many pixels a side, ImageNet's downsampling stem would shrink the image away


def resnet(
    *, in_shape: Sequence[int], num_outputs: int, variant: str = "resnet18", small_input_stem: bool | str = "auto"
) -> nn.Module:
    """ResNet with a head for num_outputs; small images get a 3x3 stride-1 stem and no max pooling."""
    from torchvision import models

    if variant not in RESNETS:
        raise ConfigError(f"model.variant = {variant}: unknown; type one of {' | '.join(RESNETS)}")
    channels, height, width = image_shape(in_shape, "resnet")
    if small_input_stem not in ("auto", True, False):
        raise ConfigError(f"model.small_input_stem = {small_input_stem}: type auto, true or false")
    small = min(height, width) < SMALL_IMAGE if small_input_stem == "auto" else small_input_stem
    net = models.get_model(variant, weights=None, num_classes=num_outputs)
    if small:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net

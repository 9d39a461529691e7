"""A plain convolutional network: conv blocks with pooling, then a fully connected head."""

from collections.abc import Sequence

from torch import nn

from dlrun.errors import ConfigError
from dlrun.models.layers import activation as make_activation
from dlrun.models.layers import dense_stack, image_shape

POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def cnn(
    *,
    in_shape: Sequence[int],
    num_outputs: int,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    pooling: str = "max",
    activation: str = "relu",
    batch_norm: bool = True,
    fc: Sequence[int] = (128,),
    dropout: float = 0.0,
) -> nn.Sequential:
    in_channels, height, width = image_shape(in_shape, "cnn")
    if pooling not in POOLING:
        raise ConfigError(f"model.pooling = {pooling}: unknown; type model.pooling=max or avg")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"model.kernel_size = {kernel_size}: must be odd and positive; type model.kernel_size=3")
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(make_activation(activation))
        if min(height, width) >= 2:  # pool while there is something left to pool
            layers.append(POOLING[pooling](2))
            height, width = height // 2, width // 2
        in_channels = out_channels
    layers.append(nn.Flatten())
    if dropout:
        layers.append(nn.Dropout(dropout))
    head = dense_stack(in_channels * height * width, fc, num_outputs, activation_name=activation, dropout=dropout)
    return nn.Sequential(*layers, *head)

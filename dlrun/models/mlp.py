"""Multi-layer perceptron."""

import math
from collections.abc import Sequence

from torch import nn

from dlrun.models.layers import dense_stack


def mlp(
    *,
    in_shape: Sequence[int],
    num_outputs: int,
    hidden: Sequence[int] = (256, 128),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Flattens each input (an image, resized by the dataset's transforms, or a feature vector), then the dense
    layers."""
    stack = dense_stack(
        math.prod(in_shape),
        hidden,
        num_outputs,
        activation_name=activation,
        dropout=dropout,
        batch_norm=batch_norm,
    )
    return nn.Sequential(nn.Flatten(), *stack)

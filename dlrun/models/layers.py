"""Pieces shared by the model builders, and evaluating(): a model in eval mode for a while."""

import contextlib
from collections.abc import Iterator, Sequence

from torch import nn

from dlrun.errors import ConfigError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation = {name}: unknown; type one of {' | '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_dropout(dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout = {dropout}: must be in [0, 1); type model.dropout=0.1, or 0 to disable")


def image_shape(in_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """(channels, height, width), or a ConfigError when the dataset does not give images."""
    if len(in_shape) != 3:
        raise ConfigError(
            f"model={model} needs images [channels, height, width], but the dataset gives in_shape={list(in_shape)}; "
            "type model=mlp, or an image dataset: dataset=digits|mnist|fashion_mnist|cifar10|cifar100|image_folder"
        )
    return tuple(in_shape)


def dense_stack(
    in_features: int,
    hidden: Sequence[int],
    num_outputs: int,
    *,
    activation_name: str,
    dropout: float,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Linear layers of the given widths, each followed by [batch norm,] activation and dropout, then the output."""
    check_dropout(dropout)
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation(activation_name))
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_outputs))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (dropout off, batch norm's running statistics) inside the block, as it was after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

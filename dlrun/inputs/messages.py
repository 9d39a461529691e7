"""How an input looks, for the problems the input readers report."""

from collections.abc import Sequence


def describe_shape(in_shape: Sequence[int]) -> str:
    """How one input looks, for messages: '30 features' or 'images [1, 8, 8] (channels, height, width)'."""
    if len(in_shape) == 1:
        return f"{in_shape[0]} features per input"
    if len(in_shape) == 3:
        return f"images {list(in_shape)} (channels, height, width)"
    return f"inputs of shape {list(in_shape)}"

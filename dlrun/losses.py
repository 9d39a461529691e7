"""Loss builders whose config values are plain numbers and lists, turned into tensors here."""

import torch
from torch import nn


def cross_entropy(*, label_smoothing: float = 0.0, class_weights: list[float] | None = None) -> nn.CrossEntropyLoss:
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def bce(*, pos_weight: float | None = None) -> nn.BCEWithLogitsLoss:
    weight = None if pos_weight is None else torch.tensor([pos_weight], dtype=torch.float32)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


def weight_penalty(model: nn.Module, *, l1: float, l2: float) -> torch.Tensor | float:
    """L1 and L2 penalties on the weight matrices and kernels (biases and norm scales are left alone)."""
    if not (l1 or l2):
        return 0.0
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    penalty = 0.0
    if l1:
        penalty = penalty + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        penalty = penalty + l2 * sum(w.pow(2).sum() for w in weights)
    return penalty

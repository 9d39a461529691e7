"""Loss builders whose config values are plain numbers and lists, turned into tensors here."""

import torch
from torch import nn


def cross_entropy(*, label_smoothing: float = 0.0, class_weights: list[float] | None = None) -> nn.CrossEntropyLoss:
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def bce(*, pos_weight: float | None = None) -> nn.BCEWithLogitsLoss:
    weight = None if pos_weight is None else torch.tensor([pos_weight], dtype=torch.float32)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


def with_weight_penalty(loss: torch.Tensor, model: nn.Module, *, l1: float, l2: float) -> torch.Tensor:
    """loss plus L1 and L2 penalties on the weight matrices and kernels (biases and norm scales are left alone);
    the loss itself when both are 0 (no extra operation per step)."""
    if not (l1 or l2):
        return loss
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    if l1:
        loss = loss + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        loss = loss + l2 * sum(w.pow(2).sum() for w in weights)
    return loss

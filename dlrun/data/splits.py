"""Train/val/test splits and standardisation with the training split's statistics."""

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor


def split_indices(
    targets: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test samples; stratified by class for classification."""
    index = np.arange(len(targets))
    rest, test = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=targets if stratify else None
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed,
        stratify=targets[rest] if stratify else None,
    )
    return train, val, test


def split_off(targets: np.ndarray, *, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a (1 - fraction, fraction) split, e.g. train and val out of an official training set."""
    index = np.arange(len(targets))
    kept, held_out = train_test_split(
        index, test_size=fraction, random_state=seed, stratify=targets if stratify else None
    )
    return kept, held_out


def standardize(train: Tensor, *others: Tensor, dims: tuple[int, ...]) -> tuple[list[Tensor], Tensor, Tensor]:
    """(x - mean) / std over `dims` for every split, with the training split's mean and std (also returned)."""
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return [(x - mean) / std for x in (train, *others)], mean[0], std[0]


def as_tensors(inputs: np.ndarray, targets: np.ndarray, *, classification: bool) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(inputs, dtype=torch.float32)
    if classification:
        return x, torch.as_tensor(targets, dtype=torch.long)
    return x, torch.as_tensor(targets, dtype=torch.float32).reshape(len(targets), -1)

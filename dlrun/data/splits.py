"""Train/val/test splits and standardisation with the training split's statistics."""

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from dlrun.errors import ConfigError


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


def hold_out_splits(
    labels: dict[str, np.ndarray], *, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, tuple[str, np.ndarray]]:
    """The labels of the split folders a dataset has (train, and maybe val and test); for each of train, val and
    test the folder its samples come from and their indices there. A missing val or test is held out of train,
    stratified: test first by test_fraction, then val by val_fraction of all the samples."""
    chosen = {split: (split, np.arange(len(labels[split]))) for split in labels}
    test_held_out = "test" not in labels
    share = val_fraction / (1 - test_fraction) if test_held_out else val_fraction
    for split, fraction, split_share in (("test", test_fraction, test_fraction), ("val", val_fraction, share)):
        if split in chosen:
            continue
        train = chosen["train"][1]
        try:
            kept, held = split_off(labels["train"][train], fraction=split_share, seed=seed, stratify=True)
        except ValueError as error:
            raise ConfigError(
                f"dataset.{split}_fraction = {fraction}: cannot hold out a {split} set with every class from "
                f"{len(train)} training samples ({error}); add a {split}/ folder or more samples per class"
            ) from error
        chosen["train"], chosen[split] = ("train", train[kept]), ("train", train[held])
    return chosen

"""Each key's type and range: trainer keys and the numbers of the free-form groups."""

import re
from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dlrun.config import TrainerConfig
from dlrun.signals import check_preemption_signal

PRECISIONS = ("32", "bf16", "16")
AUTO = "auto"  # dataset.in_shape, dataset.num_classes: counted from the data when it is read (dlrun/data/spec.py)
LOSS_KEYS = ("problem", "l1", "l2")  # read by dlrun from every loss option (conf/loss/*.yaml)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_values(cfg: DictConfig) -> list[str]:
    """A problem for each key whose value is of the wrong type or out of its range."""
    return [*_check_trainer(cfg), *_check_numbers(cfg)]


def lookup(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None)


def _check_trainer(cfg: DictConfig) -> list[str]:
    trainer = cfg.trainer
    known = [f.name for f in fields(TrainerConfig)]
    problems = [
        f"trainer.{key}: not a trainer key; leave out +trainer.{key} (the keys: {', '.join(known)})"
        for key in trainer
        if key not in known
    ]
    if trainer.max_epochs < 1:
        problems.append(f"trainer.max_epochs = {trainer.max_epochs}: must be at least 1; type trainer.max_epochs=10")
    if trainer.precision not in PRECISIONS:
        problems.append(f"trainer.precision = {trainer.precision}: unknown; type one of trainer.precision=32|bf16|16")
    if not DEVICE_PATTERN.match(trainer.device):
        problems.append(f"trainer.device = {trainer.device}: unknown; type trainer.device=auto|cpu|cuda|cuda:N|mps")
    elif trainer.device.startswith("cuda") or trainer.device == "mps":
        problems += _check_device_present(trainer.device)
    for key in ("accumulate_grad_batches", "check_val_every_n_epoch", "log_every_n_steps", "limit_batches"):
        value = trainer[key]
        if value is not None and value < 1:
            problems.append(f"trainer.{key} = {value}: must be at least 1; type trainer.{key}=1")
    on_device = trainer.data_on_device
    if not (isinstance(on_device, bool) or on_device == "auto"):
        problems.append(f"trainer.data_on_device = {on_device}: unknown; type trainer.data_on_device=auto|true|false")
    problems += check_preemption_signal(trainer.preemption_signal)
    if trainer.nonfinite_loss not in ("stop", "skip"):
        problems.append(f"trainer.nonfinite_loss = {trainer.nonfinite_loss}: unknown; type stop or skip")
    clip = trainer.gradient_clip_val
    if clip is not None and clip <= 0:
        problems.append(f"trainer.gradient_clip_val = {clip}: must be > 0; type trainer.gradient_clip_val=1.0 or null")
    return problems


def _check_device_present(device: str) -> list[str]:
    import torch  # only asked for an accelerator: the check needs torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            return ["trainer.device = mps: no Apple GPU on this machine; type trainer.device=auto or cpu"]
        return []
    if not torch.cuda.is_available():
        return [f"trainer.device = {device}: no CUDA GPU on this machine; type trainer.device=auto or cpu"]
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        return [f"trainer.device = {device}: this machine has {count} GPU(s); type trainer.device=cuda:0"]
    return []


# Numeric keys of the free-form groups: (key, allowed, what it must be, what to type instead).
NUMBER_RULES = [
    ("dataset.val_fraction", lambda v: 0 < v < 1, "must be between 0 and 1", "dataset.val_fraction=0.15"),
    ("dataset.test_fraction", lambda v: 0 < v < 1, "must be between 0 and 1", "dataset.test_fraction=0.15"),
    ("dataset.batch_size", lambda v: v >= 1 and v == int(v), "must be a whole number >= 1", "dataset.batch_size=64"),
    ("dataset.num_workers", lambda v: v >= 0 and v == int(v), "must be a whole number >= 0", "dataset.num_workers=0"),
    ("dataset.split_seed", lambda v: v >= 0 and v == int(v), "must be a whole number >= 0", "dataset.split_seed=0"),
    (
        "dataset.prefetch_factor",
        lambda v: v >= 1 and v == int(v),
        "must be a whole number >= 1",
        "dataset.prefetch_factor=2",
    ),
    ("model.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)", "model.dropout=0.1"),
    ("loss.l1", lambda v: v >= 0, "cannot be negative", "loss.l1=0"),
    ("loss.l2", lambda v: v >= 0, "cannot be negative", "loss.l2=0"),
    ("loss.criterion.label_smoothing", lambda v: 0 <= v < 1, "must be in [0, 1)", "loss.criterion.label_smoothing=0.1"),
    ("optimizer.lr", lambda v: v > 0, "must be > 0", "optimizer.lr=0.001"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "must be in [0, 1)", "optimizer.momentum=0.9"),
    ("optimizer.weight_decay", lambda v: v >= 0, "cannot be negative", "optimizer.weight_decay=0"),
    ("scheduler.max_lr", lambda v: v > 0, "must be > 0", "scheduler.max_lr=0.01"),
    (
        "scheduler.warmup_epochs",
        lambda v: v >= 0 and v == int(v),
        "must be a whole number >= 0",
        "scheduler.warmup_epochs=0",
    ),
    (
        "callbacks.early_stopping.patience",
        lambda v: v >= 1 and v == int(v),
        "must be a whole number >= 1",
        "callbacks.early_stopping.patience=10",
    ),
]
# Keys holding lists of whole numbers >= 1.
SIZE_LISTS = {
    "model.hidden": "model.hidden=[256,128]",
    "model.channels": "model.channels=[32,64]",
    "model.fc": "model.fc=[128]",
    "dataset.in_shape": "dataset.in_shape=[1,8,8]",
}


def is_number(value: Any) -> bool:
    """A config value that is a real number: not a bool, a string or NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is not


def _check_numbers(cfg: DictConfig) -> list[str]:
    problems = []
    for key, allowed, requirement, example in NUMBER_RULES:
        value = lookup(cfg, key)
        if value is None:
            continue
        if not is_number(value):
            problems.append(f"{key} = {value}: must be a number; type {example}")
        elif not allowed(value):
            problems.append(f"{key} = {value}: {requirement}; type {example}")
    for key, example in SIZE_LISTS.items():
        value = lookup(cfg, key)
        if (
            value is not None
            and value != AUTO
            and not (OmegaConf.is_list(value) and all(is_number(v) and v >= 1 and v == int(v) for v in value))
        ):
            problems.append(f"{key} = {value}: must be a list of whole numbers >= 1; type {example}")
    return problems

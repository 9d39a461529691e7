"""Each key's type and range: trainer keys and the numbers of the free-form groups."""

import re
from dataclasses import dataclass, fields
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
    return [*_check_trainer(cfg), *_check_numbers(cfg), *_check_words(cfg)]


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
    if trainer.compile:
        problems += _check_compile_backend(trainer.compile_backend)
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


@dataclass(frozen=True)
class Number:
    """A numeric key's range: bounds (None: unbounded), whether each is allowed, whole numbers only, null allowed."""

    example: float  # a value that works, shown in the message
    low: float | None = None
    high: float | None = None
    low_in: bool = True
    high_in: bool = True
    whole: bool = False
    nullable: bool = False

    def allows(self, value: float) -> bool:
        if self.whole and (not isinstance(value, int) or value > (LARGEST if self.high is None else self.high)):
            return False
        above = self.low is None or value > self.low or (self.low_in and value == self.low)
        below = self.high is None or value < self.high or (self.high_in and value == self.high)
        return above and below

    def requirement(self, value: float) -> str:
        if self.whole:
            top = LARGEST if self.high is None else self.high
            return f"must be a whole number >= {self.low}" + (f" and <= {top}" if value > top else "")
        if self.high is None:
            if self.low == 0:
                return "cannot be negative" if self.low_in else "must be > 0"
            return "any number" if self.low is None else f"must be {'>=' if self.low_in else '>'} {self.low:g}"
        if (self.low, self.high, self.low_in, self.high_in) == (0, 1, False, False):
            return "must be between 0 and 1"
        return f"must be in {'[' if self.low_in else '('}{self.low:g}, {self.high:g}{']' if self.high_in else ')'}"


# The largest whole number a count, size or step of a group takes: torch indexes by int32 in places, and a larger
# batch, buffer or window is a typing slip (10**12), not a plan.
LARGEST = 2**31 - 1


def whole(at_least: int, example: int, nullable: bool = False) -> Number:
    return Number(example, low=at_least, whole=True, nullable=nullable)


def positive(example: float, nullable: bool = False) -> Number:
    return Number(example, low=0, low_in=False, nullable=nullable)


def non_negative(example: float) -> Number:
    return Number(example, low=0)


def within(low: float, high: float, example: float, high_in: bool = True, nullable: bool = False) -> Number:
    return Number(example, low=low, high=high, high_in=high_in, nullable=nullable)


FRACTION = Number(0.15, low=0, high=1, low_in=False, high_in=False)  # a split's share of the data
# Every numeric key of the groups' options (tests/test_validation.py checks that each has one); the trainer's and
# dataset.in_shape / num_classes are checked with their own rules.
NUMBERS = {
    "seed": Number(42, low=-(2**63), high=2**64 - 1, whole=True),  # torch.manual_seed's range
    "dataset.val_fraction": FRACTION,
    "dataset.test_fraction": FRACTION,
    "dataset.batch_size": whole(1, 64),
    "dataset.num_workers": whole(0, 0),
    "dataset.split_seed": whole(0, 0),
    "dataset.prefetch_factor": whole(1, 2, nullable=True),
    "dataset.seed": whole(0, 42),
    "dataset.max_categories": whole(2, 50),
    "dataset.window": whole(1, 24),
    "dataset.seq_len": whole(1, 128),
    "dataset.steps_per_epoch": whole(1, 2500),
    "dataset.eval_episodes": whole(1, 10),
    "dataset.test_episodes": whole(1, 20),
    "dataset.transforms.train.crop_padding": whole(0, 4),
    "dataset.transforms.train.horizontal_flip": within(0, 1, 0.5),
    "dataset.transforms.train.rotation": within(0, 180, 10),
    "dataset.transforms.train.brightness": within(0, 1, 0.2),
    "dataset.transforms.train.contrast": within(0, 1, 0.2),
    "dataset.transforms.train.saturation": within(0, 1, 0.2),
    "dataset.transforms.train.hue": within(0, 0.5, 0.02),
    "dataset.transforms.train.random_erasing": within(0, 1, 0.25),
    "dataset.transforms.train.mixup": non_negative(0.2),  # Beta's alpha, 0 off
    "dataset.transforms.train.cutmix": non_negative(1.0),
    "model.dropout": within(0, 1, 0.1, high_in=False),
    "model.kernel_size": whole(1, 3),
    "model.latent_dim": whole(1, 16),
    "model.hidden_size": whole(1, 128),
    "model.num_layers": whole(1, 1),
    "model.embedding_dim": whole(1, 64),
    "model.input_size": whole(75, 299),
    "loss.l1": non_negative(0),
    "loss.l2": non_negative(0),
    "loss.criterion.label_smoothing": within(0, 1, 0.1, high_in=False),
    "loss.criterion.pos_weight": positive(3.0, nullable=True),
    "loss.criterion.delta": positive(1.0),
    "optimizer.lr": positive(0.001),
    "optimizer.momentum": within(0, 1, 0.9, high_in=False),
    "optimizer.weight_decay": non_negative(0),
    "optimizer.eps": positive(1e-08),
    "optimizer.lr_decay": non_negative(0),
    "optimizer.alpha": within(0, 1, 0.99, high_in=False),
    "scheduler.step_size": whole(1, 10),
    "scheduler.gamma": positive(0.1),
    "scheduler.T_max": whole(1, 30),
    "scheduler.eta_min": non_negative(0),
    "scheduler.max_lr": positive(0.01),
    "scheduler.epochs": whole(1, 30),
    "scheduler.steps_per_epoch": whole(1, 100, nullable=True),
    "scheduler.pct_start": Number(0.3, low=0, high=1, low_in=False, high_in=False),
    "scheduler.factor": Number(0.1, low=0, high=1, low_in=False, high_in=False),
    "scheduler.patience": whole(0, 5),
    "scheduler.warmup_epochs": whole(0, 0),
    "task.aux_loss_weight": non_negative(0.3),
    "task.noise_std": non_negative(0.1),
    "task.anomaly_percentile": within(0, 100, 95),
    "task.beta": non_negative(1.0),
    "task.discriminator_steps": whole(1, 1),
    "task.scored_samples": whole(1, 1000),
    "task.sample_seed": whole(0, 0),
    "task.discriminator_optimizer.lr": positive(0.0002),
    "task.gamma": within(0, 1, 0.99),
    "task.buffer_size": whole(1, 50000),
    "task.batch_size": whole(1, 128),
    "task.learning_starts": whole(0, 1000),
    "task.train_every": whole(1, 1),
    "task.target_update_every": whole(1, 1),
    "task.tau": Number(0.005, low=0, high=1, low_in=False),
    "task.epsilon_start": within(0, 1, 1.0),
    "task.epsilon_end": within(0, 1, 0.05),
    "task.epsilon_decay_steps": whole(1, 10000),
    "env.max_episode_steps": whole(1, 500, nullable=True),
    "env.max_return": Number(500, nullable=True),
    "callbacks.early_stopping.patience": whole(1, 10),
    "callbacks.early_stopping.min_delta": non_negative(0),
    "callbacks.early_stopping.stop_at": Number(500, nullable=True),
    "callbacks.ema.decay": Number(0.999, low=0, high=1, low_in=False, high_in=False, nullable=True),
    "callbacks.ema.every_n_steps": whole(1, 1),
    "callbacks.progress.delay": non_negative(0.5),
    "callbacks.progress.refresh_per_second": positive(4.0),
    "callbacks.checkpoint.save_interval_s": non_negative(1.0),
    "callbacks.checkpoint.mid_epoch_interval_s": positive(600, nullable=True),
    "callbacks.checkpoint.save_top_k": whole(0, 3, nullable=True),
    "callbacks.classification_report.max_classes": whole(1, 100),
    "callbacks.image_grids.num_images": whole(1, 32),
    "callbacks.image_grids.images_per_row": whole(1, 8),
    "callbacks.image_grids.every_n_epochs": whole(1, 1),
    "callbacks.embeddings.max_samples": whole(1, 2000),
    "callbacks.text_samples.length": whole(1, 300),
    "callbacks.text_samples.temperature": positive(0.8),
    "callbacks.text_samples.every_n_epochs": whole(1, 1),
    "callbacks.text_samples.seed": whole(0, 0),
}
# Keys holding lists of whole numbers >= 1.
SIZE_LISTS = {
    "model.hidden": "model.hidden=[256,128]",
    "model.channels": "model.channels=[32,64]",
    "model.fc": "model.fc=[128]",
    "model.generator_channels": "model.generator_channels=[128,64]",
    "model.discriminator_channels": "model.discriminator_channels=[64,128]",
    "model.generator_hidden": "model.generator_hidden=[256,256]",
    "model.discriminator_hidden": "model.discriminator_hidden=[256,256]",
    "dataset.in_shape": "dataset.in_shape=[1,8,8]",
}
BETAS = {"optimizer.betas": "optimizer.betas=[0.9,0.999]", "task.discriminator_optimizer.betas": "[0.5,0.999]"}
# Keys that are true or false.
FLAGS = (
    "dataset.normalize",
    "dataset.download",
    "dataset.persistent_workers",
    "model.batch_norm",
    "model.pretrained",
    "model.freeze_backbone",
    "model.download",
    "model.aux_logits",
    "model.bidirectional",
    "optimizer.nesterov",
    "task.double_dqn",
)
# Keys that take one of a few words (the monitors' modes: dlrun/validation/combinations.py).
CHOICES = {
    "dataset.storage": ("auto", "memory", "stream"),
    "dataset.unreadable": ("skip", "stop"),
    "model.architecture": ("mlp", "conv"),
    "model.small_input_stem": ("auto", True, False),
}
_ABSENT = object()


def _check_compile_backend(backend: str) -> list[str]:
    """A backend torch.compile knows (torch._dynamo is imported only for a run that compiles)."""
    from torch._dynamo import list_backends

    known = list_backends(exclude_tags=())
    if backend in known:
        return []
    return [
        f"trainer.compile_backend = {backend}: unknown to torch.compile; type trainer.compile_backend=inductor "
        f"or aot_eager (the backends: {', '.join(known)})"
    ]


def is_number(value: Any) -> bool:
    """A config value that is a real number: not a bool, a string or NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is not


def _check_numbers(cfg: DictConfig) -> list[str]:
    problems = []
    for key, rule in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT or (value is None and rule.nullable):
            continue
        example = f"type {key}={rule.example:g}" + (f" or {key}=null" if rule.nullable else "")
        if not is_number(value):
            problems.append(f"{key} = {_shown(value)}: must be a number; {example}")
        elif not rule.allows(value):
            problems.append(f"{key} = {value}: {rule.requirement(value)}; {example}")
    for key, example in SIZE_LISTS.items():
        value = lookup(cfg, key)
        if (
            value is not None
            and value != AUTO
            and not (OmegaConf.is_list(value) and all(is_number(v) and v >= 1 and v == int(v) for v in value))
        ):
            problems.append(f"{key} = {value}: must be a list of whole numbers >= 1; type {example}")
    for key, example in BETAS.items():
        value = lookup(cfg, key)
        if value is not None and not (
            OmegaConf.is_list(value) and len(value) == 2 and all(is_number(v) and 0 <= v < 1 for v in value)
        ):
            problems.append(f"{key} = {_shown(value)}: must be two numbers in [0, 1); type {key}={example}")
    return problems


def _check_words(cfg: DictConfig) -> list[str]:
    problems = []
    for key in FLAGS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not isinstance(value, bool):
            problems.append(f"{key} = {_shown(value)}: must be true or false; type {key}=true or {key}=false")
    for key, words in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not (isinstance(value, bool | str) and value in words):
            shown = "|".join(str(word).lower() for word in words)
            problems.append(f"{key} = {_shown(value)}: unknown; type {key}={shown}")
    return problems


def _shown(value: Any) -> str:
    """A value as the command line would write it: null, true, a list's items."""
    if value is None or isinstance(value, bool):
        return str(value).lower() if value is not None else "null"
    return str(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)

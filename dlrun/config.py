"""Schemas for the fixed-shape parts of the config, and validate(): every cross-field problem at once.

Imports no torch, so that config errors are reported in a fraction of a second.
"""

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlrun.errors import ConfigError
from dlrun.signals import check_preemption_signal

PACKAGE_DIR = Path(__file__).resolve().parent
# An installed wheel carries the configs inside the package; a source checkout keeps them at the top.
CONFIG_DIR = next(p for p in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if p.is_dir())

PRECISIONS = ("32", "bf16", "16")
AUTO = "auto"  # dataset.in_shape, dataset.num_classes: counted from the data when it is read (dlrun/data/spec.py)
LOSS_KEYS = ("problem", "l1", "l2")  # read by dlrun from every loss option (conf/loss/*.yaml)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DQN_TASK = "dlrun.tasks.dqn.DQNTask"  # plays a gymnasium environment: dataset=environment with an env= option
ENVIRONMENT_DATA = "dlrun.data.environment.load"
DQN_MODEL = "dlrun.models.mlp.mlp"  # experiment=dqn sets its widths (model.hidden)
RECONSTRUCTION = "reconstruction"  # loss.problem of loss=reconstruction, under task=autoencoder|vae
AUTOENCODERS = {"dlrun.models.autoencoder.autoencoder": "autoencoder", "dlrun.models.autoencoder.vae": "vae"}
RECONSTRUCTING_TASKS = {"dlrun.tasks.autoencoder.AutoencoderTask": "autoencoder", "dlrun.tasks.vae.VAETask": "vae"}
TEXT_DATA = "dlrun.data.text.load"  # characters to predict: task=language_model's
LANGUAGE_MODEL_TASK = "dlrun.tasks.language_model.LanguageModelTask"


# The config groups a run cannot do without, and the option conf/config.yaml picks for each.
REQUIRED_GROUPS = {
    "dataset": "digits",
    "model": "mlp",
    "task": "supervised",
    "loss": "cross_entropy",
    "optimizer": "adam",
    "callbacks": "default",
}


@dataclass
class TrainerConfig:
    """The trainer keys' types; their values and meaning are conf/trainer/default.yaml's (trainer_defaults)."""

    max_epochs: int = MISSING
    device: str = MISSING
    precision: str = MISSING
    gradient_clip_val: float | None = MISSING
    accumulate_grad_batches: int = MISSING
    check_val_every_n_epoch: int = MISSING
    log_every_n_steps: int = MISSING
    limit_batches: int | None = MISSING
    fast_dev_run: bool = MISSING
    deterministic: bool = MISSING
    nonfinite_loss: str = MISSING
    compile: bool = MISSING
    channels_last: bool = MISSING
    data_on_device: Any = MISSING  # auto | true | false
    preemption_signal: str | None = MISSING


@dataclass
class RunConfig:
    """The top-level keys' types; their values and meaning are conf/config.yaml's."""

    dataset: Any = None
    model: Any = None
    task: Any = None
    loss: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: Any = None
    env: Any = None
    name: str = MISSING
    seed: int = MISSING
    repeats: int = MISSING
    ckpt_path: str | None = MISSING
    resume: str = MISSING
    print_config: bool = MISSING
    quiet: bool = MISSING


def trainer_defaults() -> dict:
    """The trainer's settings when no trainer key is overridden: conf/trainer/default.yaml, their one source."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml"))


def register_schemas() -> None:
    """Make the schemas available to the defaults lists of conf/."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every impossible value, before anything is built."""
    _check_present(cfg)
    _check_resolves(cfg)
    problems = [
        *_check_trainer(cfg),
        *_check_numbers(cfg),
        *_check_data(cfg),
        *_check_loss(cfg),
        *_check_optimizer(cfg),
        *_check_scheduler(cfg),
        *_check_resume(cfg),
    ]
    if problems:
        raise ConfigError(*problems)


def _check_present(cfg: DictConfig) -> None:
    """The keys of the schemas are dlrun's own: removing one (~seed), or a group a run needs (~model), leaves dlrun
    without it."""
    unchosen = [
        f"{group}: removed, but dlrun needs one; leave out ~{group}, or type {group}={option}"
        for group, option in REQUIRED_GROUPS.items()
        if group in cfg and cfg[group] is None
    ]
    missing = [f.name for f in fields(RunConfig) if f.name not in cfg]
    missing += [f"trainer.{f.name}" for f in fields(TrainerConfig) if "trainer" in cfg and f.name not in cfg.trainer]
    missing += [f"loss.{key}" for key in LOSS_KEYS if OmegaConf.is_dict(cfg.get("loss")) and key not in cfg.loss]
    if missing or unchosen:
        raise ConfigError(*unchosen, *(f"{key}: removed, but dlrun needs it; leave out ~{key}" for key in missing))


def _check_resolves(cfg: DictConfig) -> None:
    """Every ${...} interpolation must resolve: an override may have removed what one points at."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"{error.full_key or 'config'}: {reason}; put back the key it needs (dlrun --cfg job shows the config)"
        ) from error


def _value(cfg: DictConfig, key: str) -> Any:
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
        value = _value(cfg, key)
        if value is None:
            continue
        if not is_number(value):
            problems.append(f"{key} = {value}: must be a number; type {example}")
        elif not allowed(value):
            problems.append(f"{key} = {value}: {requirement}; type {example}")
    for key, example in SIZE_LISTS.items():
        value = _value(cfg, key)
        if (
            value is not None
            and value != AUTO
            and not (OmegaConf.is_list(value) and all(is_number(v) and v >= 1 and v == int(v) for v in value))
        ):
            problems.append(f"{key} = {value}: must be a list of whole numbers >= 1; type {example}")
    return problems


def _check_data(cfg: DictConfig) -> list[str]:
    problems = []
    fractions = [_value(cfg, f"dataset.{key}") for key in ("val_fraction", "test_fraction")]
    total = sum(v for v in fractions if is_number(v))
    if total >= 1:
        problems.append(
            f"dataset.val_fraction + dataset.test_fraction = {total:g}: leaves nothing to train on; "
            "type fractions that add up to less than 1, e.g. dataset.val_fraction=0.15 dataset.test_fraction=0.15"
        )
    if not _value(cfg, "dataset.num_workers"):
        for key, off in (("persistent_workers", "false"), ("prefetch_factor", "null")):
            value = _value(cfg, f"dataset.{key}")
            if value not in (False, None):
                problems.append(
                    f"dataset.{key} = {str(value).lower()}: only for the DataLoader path; "
                    f"type dataset.num_workers=2 with it, or dataset.{key}={off}"
                )
    return problems


def _check_loss(cfg: DictConfig) -> list[str]:
    environment = _value(cfg, "dataset._target_") == ENVIRONMENT_DATA or cfg.env is not None
    if _value(cfg, "task._target_") == DQN_TASK or environment:
        return _check_environment(cfg)  # the outputs are the environment's actions, whatever the loss
    problem = _value(cfg, "loss.problem")
    autoencoder = AUTOENCODERS.get(_value(cfg, "model._target_"))
    if problem == RECONSTRUCTION or autoencoder is not None:
        return _check_reconstruction(cfg, problem, autoencoder)
    if _value(cfg, "dataset._target_") == TEXT_DATA and _value(cfg, "task._target_") != LANGUAGE_MODEL_TASK:
        return [
            "dataset = text: every character predicts the next, which this task does not train; "
            "type task=language_model model=lstm, or experiment=text"
        ]
    num_classes = _value(cfg, "dataset.num_classes")
    dataset = _value(cfg, "dataset.name")
    if num_classes == AUTO:  # image folders, CSV targets, text vocabularies: their classes are counted when read
        if problem == "classification":
            return []
        if problem == "binary":
            return [f"loss = bce needs 2 classes, dataset {dataset} counts its own; type dataset.num_classes=2"]
        return [f"loss = mse on dataset {dataset}, whose classes are counted from the data; type loss=cross_entropy"]
    if num_classes is not None and not (
        is_number(num_classes) and num_classes >= 2 and num_classes == int(num_classes)
    ):
        return [f"dataset.num_classes = {num_classes}: must be a whole number >= 2, or null for regression"]
    if problem == "regression" and num_classes is not None:
        return [f"loss = mse on dataset {dataset} with {num_classes} classes; type loss=cross_entropy"]
    if problem in ("classification", "binary") and num_classes is None:
        return [f"loss = {_loss_name(problem)} on the regression dataset {dataset}; type loss=mse"]
    if problem == "binary" and num_classes != 2:
        return [f"loss = bce needs 2 classes, dataset {dataset} has {num_classes}; type loss=cross_entropy"]
    weights = _value(cfg, "loss.criterion.class_weights")
    if weights is not None and not (
        OmegaConf.is_list(weights)
        and len(weights) == num_classes
        and all(is_number(w) or w == float("inf") for w in weights)
    ):
        return [
            f"loss.criterion.class_weights = {weights}: needs one number per class ({num_classes}); "
            f"type {num_classes} numbers in brackets, or loss.criterion.class_weights=null"
        ]
    return []


def _check_environment(cfg: DictConfig) -> list[str]:
    """task=dqn plays dataset=environment, the env group's environment, and nothing else; experiment=dqn chooses all
    three."""
    dqn, environment = _value(cfg, "task._target_") == DQN_TASK, _value(cfg, "dataset._target_") == ENVIRONMENT_DATA
    if not (dqn or environment):
        return [f"env.id = {_value(cfg, 'env.id')}: played by task=dqn on dataset=environment; type experiment=dqn"]
    if not dqn:
        return ["dataset = environment is played by task=dqn; type task=dqn, or experiment=dqn"]
    if not environment:
        return [
            f"task = dqn plays a gymnasium environment, not dataset {_value(cfg, 'dataset.name')}; "
            "type experiment=dqn (env=cartpole, or env=acrobot with it), without dataset="
        ]
    model = _value(cfg, "model._target_")
    if model != DQN_MODEL:
        return [f"model = {model}: DQN's Q-network reads observation vectors; type model=mlp (model.hidden=[...])"]
    return []


def _check_reconstruction(cfg: DictConfig, problem: str, autoencoder: str | None) -> list[str]:
    """task=autoencoder|vae train their own model under loss=reconstruction, and nothing else does; any dataset's
    inputs can be reconstructed."""
    task = RECONSTRUCTING_TASKS.get(_value(cfg, "task._target_"))
    if task is None and autoencoder is None:
        return [
            "loss = reconstruction: only task=autoencoder and task=vae reconstruct their inputs; "
            "type loss=cross_entropy (classes) or loss=mse (numbers)"
        ]
    if task is None:
        return [
            f"model = {autoencoder} reconstructs its inputs, which this task does not train; "
            f"type task={autoencoder} loss=reconstruction, or experiment={autoencoder}"
        ]
    if autoencoder != task:
        return [f"model = {_value(cfg, 'model._target_')}: task={task} trains model={task}; type model={task}"]
    if problem != RECONSTRUCTION:
        return [
            f"loss: task={task} compares each output with its input, not {problem} targets; type loss=reconstruction"
        ]
    return []


def _loss_name(problem: str) -> str:
    return {"classification": "cross_entropy", "binary": "bce"}[problem]


def _check_optimizer(cfg: DictConfig) -> list[str]:
    if _value(cfg, "optimizer.nesterov") and not _value(cfg, "optimizer.momentum"):
        return ["optimizer.nesterov = true needs momentum; type optimizer.momentum=0.9 or optimizer.nesterov=false"]
    return []


def _check_scheduler(cfg: DictConfig) -> list[str]:
    if not cfg.scheduler:
        return []
    problems = []
    interval = _value(cfg, "scheduler.interval")
    if interval not in ("epoch", "step"):
        problems.append(f"scheduler.interval = {interval}: unknown; type scheduler.interval=epoch or step")
    if _value(cfg, "scheduler.warmup_epochs") and _value(cfg, "scheduler.monitor") is not None:
        problems.append("scheduler.warmup_epochs: plateau cannot warm up; type scheduler.warmup_epochs=0")
    return problems


def _check_resume(cfg: DictConfig) -> list[str]:
    if cfg.resume not in ("never", "auto"):
        return [f"resume = {cfg.resume}: unknown; type resume=auto or resume=never"]
    if cfg.ckpt_path is None or Path(cfg.ckpt_path).expanduser().is_file():
        return []
    return [
        f"ckpt_path = {cfg.ckpt_path}: no such file; "
        "type the path of a last.pt or best.pt, e.g. outputs/<run>/checkpoints/last.pt"
    ]

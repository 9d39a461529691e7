"""The one place that calls hydra.utils.instantiate: config in, plain objects out."""

import inspect
from collections.abc import Callable
from pathlib import Path

import hydra.utils
from omegaconf import DictConfig, OmegaConf

from dlrun import extras
from dlrun.data.mixing import off_overrides, refuse_without_images
from dlrun.data.module import DataModule, Splits
from dlrun.data.spec import DataSpec
from dlrun.errors import ConfigError, first_line
from dlrun.schedulers import ScheduledLR, schedule
from dlrun.tasks.base import Task
from dlrun.trainer import Trainer

SCHEDULER_KEYS = ("interval", "warmup_epochs", "monitor")  # read by dlrun, not passed to the scheduler
DATASET_KEYS = ("num_classes_by_loss",)  # read by the dataset config's own interpolations, not passed to the loader
BATCHING_KEYS = ("batch_size", "num_workers", "persistent_workers", "prefetch_factor")  # the DataModule's


def instantiate(node: DictConfig | dict, key: str, **supplied):
    """hydra.utils.instantiate, with a user's mistake (bad target, argument or value) as a ConfigError naming key."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **supplied)
    except hydra.errors.InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if cause is None or isinstance(cause, TypeError | ValueError | ImportError | AttributeError):
            raise _not_built(key, node, cause or error) from error
        raise cause from None  # a bug in the built code: its own traceback, not Hydra's wrapper
    except TypeError as error:  # Hydra's own check of the node, unwrapped: task._partial_=[]
        raise _not_built(key, node, error) from error


def _not_built(key: str, node, reason: Exception) -> ConfigError:
    if not isinstance(node, dict | DictConfig):  # callbacks.progress=-100: a value where a config belongs
        return ConfigError(f"{key} = {node}: takes a config with a _target_; dlrun --cfg job shows the default one")
    target = node.get("_target_")
    missing_extra = extras.missing_for_import(f"{key}._target_ = {target}", reason)
    if missing_extra:
        return ConfigError(missing_extra)
    return ConfigError(
        f"{key}: could not build {target}: {reason}; check the {key}.* keys (dlrun --cfg job shows them)"
    )


def data(cfg: DictConfig):
    """The dataset's splits, batched as the dataset.* batching keys say (an environment plays its own batches)."""
    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    for key in DATASET_KEYS:
        node.pop(key, None)
    batching = {key: node.pop(key) for key in BATCHING_KEYS if key in node}
    _refuse_mixing_without_images(node)
    built = instantiate(node, "dataset")
    if not isinstance(built, Splits):
        return built
    return DataModule.batching(built, **batching, shuffle_seed=cfg.seed)


def _refuse_mixing_without_images(node: dict) -> None:
    """Mixup/CutMix added (+dataset.transforms.train.mixup=...) to a dataset whose builder takes no image transforms:
    a table, a series, a text; refused naming the key, before the builder fails on an argument it does not know."""
    if "transforms" not in node:
        return
    try:
        builder = hydra.utils.get_method(node["_target_"])
    except (KeyError, ImportError, ValueError, AttributeError):  # AttributeError: a _target_ that is no string
        return  # instantiate names a target that cannot be built
    if "transforms" not in _named_by(builder, {"transforms": None}):
        refuse_without_images(node["transforms"], f"dataset._target_ = {node['_target_']} reads no images")


def model(cfg: DictConfig, spec: DataSpec):
    """The config's model for the data: its builder gets in_shape, num_outputs and a text's vocab_size from spec."""
    make = instantiate(cfg.model, "model", _partial_=True)
    try:
        return _call(make, _model_offer(cfg, spec), "model", cfg.model)
    except (MemoryError, RuntimeError) as error:  # torch's CPU allocator refuses with a RuntimeError
        if not isinstance(error, MemoryError) and "allocate" not in str(error):
            raise
        raise ConfigError(
            f"model = {cfg.model.get('name', cfg.model.get('_target_'))}: its weights do not fit in this machine's "
            f"memory ({first_line(error)}); type smaller sizes (model.hidden, model.channels, model.hidden_size ...)"
        ) from None


def model_arguments(cfg: DictConfig, spec: DataSpec) -> dict:
    """Those of spec's model arguments that the model's builder names (a GAN takes no num_outputs, say)."""
    builder = instantiate(cfg.model, "model", _partial_=True).func  # looked up under Hydra's target restrictions
    return _named_by(builder, _model_offer(cfg, spec))


def _model_offer(cfg: DictConfig, spec: DataSpec) -> dict:
    return spec.model_arguments(OmegaConf.select(cfg, "loss.problem", default=None))


def _call(make: Callable, offered: dict, key: str, node) -> object:
    """A partial from instantiate called with those of offered that it names; a value it cannot take (a key it
    does not know) is a ConfigError naming key."""
    try:
        return make(**_named_by(make.func, offered))
    except (TypeError, ValueError) as error:
        raise _not_built(key, node, error) from error


def _named_by(builder: Callable, offered: dict) -> dict:
    """Those of offered that builder takes by name: a function's keywords; a class's __init__'s, and its bases'
    where it passes **settings on to them."""
    initialisers = (
        [cls.__init__ for cls in builder.__mro__ if "__init__" in vars(cls)] if inspect.isclass(builder) else [builder]
    )
    names = set()
    for initialiser in initialisers:
        parameters = inspect.signature(initialiser).parameters.values()
        names |= {item.name for item in parameters if item.kind in (item.KEYWORD_ONLY, item.POSITIONAL_OR_KEYWORD)}
        if not any(item.kind is item.VAR_KEYWORD for item in parameters):
            break
    return {key: value for key, value in offered.items() if key in names}


def task(cfg: DictConfig, network, datamodule):
    """The config's task for the network, with the splits it trains on prepared (Task.prepare_data)."""
    criterion = instantiate(cfg.loss.criterion, "loss.criterion")
    make_task = instantiate(cfg.task, "task")
    spec = datamodule.spec
    offered = {
        "model": network,
        "criterion": criterion,
        "problem": cfg.loss.problem,
        "num_classes": spec.num_classes,
        "l1": cfg.loss.l1,
        "l2": cfg.loss.l2,
        "target_mean": spec.target_mean,
        "target_std": spec.target_std,
    }
    built = _call(make_task, offered, "task", cfg.task)  # each task takes what it names, nothing else
    if not isinstance(built, Task):
        raise ConfigError(
            f"task._target_ = {cfg.task._target_}: makes a {type(built).__name__}, which is not a dlrun task; "
            "subclass dlrun.tasks.base.Task (its methods: dlrun/tasks/base.py), or type task=supervised"
        )
    mix = getattr(datamodule, "train_mix", None)
    if mix is not None and not built.mixed_labels:
        raise mix.refusal(
            f"this run's task ({type(built).__name__}, loss.problem = {cfg.loss.problem}) takes no mixed labels",
            f"type {off_overrides(mix.alphas)}, or task=supervised loss=cross_entropy (multi-class)",
        )
    _check_monitors(cfg, built.metric_names())
    built.prepare_data(datamodule)
    return built


def optimizer_factory(cfg: DictConfig) -> Callable:
    """What the task calls with params= to get its optimizer."""
    make_optimizer = instantiate(cfg.optimizer, "optimizer")

    def build_optimizer(params):
        try:
            return make_optimizer(params=params)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"optimizer: could not build {cfg.optimizer._target_}: {error}") from error

    return build_optimizer


def schedulers(cfg: DictConfig, optimizers: dict, steps_per_epoch: int) -> list[ScheduledLR]:
    if not cfg.scheduler:
        return []
    node = OmegaConf.to_container(cfg.scheduler, resolve=True)
    settings = {key: node.pop(key, None) for key in SCHEDULER_KEYS}
    if "steps_per_epoch" in node and node["steps_per_epoch"] is None:
        node["steps_per_epoch"] = steps_per_epoch
    make_scheduler = instantiate(node, "scheduler")
    built = []
    for optimizer in optimizers.values():
        try:
            built.append(
                schedule(
                    make_scheduler,
                    optimizer,
                    interval=settings["interval"],
                    warmup_epochs=settings["warmup_epochs"] or 0,
                    monitor=settings["monitor"],
                    steps_per_epoch=steps_per_epoch,
                )
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"scheduler: could not build {cfg.scheduler._target_}: {error}") from error
    return built


def trainer(cfg: DictConfig, run_dir: Path) -> Trainer:
    config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = []
    for name, node in cfg.callbacks.items():
        if node is None:
            continue
        key = f"callbacks.{name}"
        callback = instantiate(node, key)
        if node.get("_partial_"):  # dlrun supplies run_dir= and config=, those of the two the callback takes
            callback = _call(callback, {"run_dir": run_dir, "config": config}, key, node)
        callbacks.append(callback)
    return Trainer(**OmegaConf.to_container(cfg.trainer), callbacks=callbacks)


def _check_monitors(cfg: DictConfig, metric_names: list[str]) -> None:
    available = [f"val/{name}" for name in metric_names]
    keys = [f"callbacks.{name}.monitor" for name in ("checkpoint", "early_stopping")] + ["scheduler.monitor"]
    problems = []
    for key in keys:
        monitor = OmegaConf.select(cfg, key, default=None)
        if monitor is not None and monitor not in available:
            problems.append(f"{key} = {monitor}: not a metric of this run; type one of {', '.join(available)}")
    if problems:
        raise ConfigError(*problems)

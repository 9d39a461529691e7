"""Groups that must fit together: the loss, dataset, task, model and environment; the data's batching; the optimizer's
and scheduler's settings."""

from omegaconf import DictConfig, OmegaConf

from dlrun.validation.values import AUTO, is_number, lookup

DQN_TASK = "dlrun.tasks.dqn.DQNTask"  # plays a gymnasium environment: dataset=environment with an env= option
ENVIRONMENT_DATA = "dlrun.data.environment.load"
DQN_MODEL = "dlrun.models.mlp.mlp"  # experiment=dqn sets its widths (model.hidden)
RECONSTRUCTION = "reconstruction"  # loss.problem of loss=reconstruction, under task=autoencoder|vae
AUTOENCODERS = {"dlrun.models.autoencoder.autoencoder": "autoencoder", "dlrun.models.autoencoder.vae": "vae"}
RECONSTRUCTING_TASKS = {"dlrun.tasks.autoencoder.AutoencoderTask": "autoencoder", "dlrun.tasks.vae.VAETask": "vae"}
TEXT_DATA = "dlrun.data.text.load"  # characters to predict: task=language_model's
LANGUAGE_MODEL_TASK = "dlrun.tasks.language_model.LanguageModelTask"
SERIES_DATA = "dlrun.data.timeseries.load"  # windows of a series: task=forecast's
FORECAST_TASK = "dlrun.tasks.forecast.ForecastTask"
# The tasks that read one kind of dlrun dataset only: option name, that dataset, what the task does, what to type.
DATA_OF_TASK = {
    FORECAST_TASK: (
        "forecast",
        SERIES_DATA,
        "forecasts the next value of a series",
        "dataset=timeseries loss=mse, or experiment=timeseries",
    ),
    LANGUAGE_MODEL_TASK: (
        "language_model",
        TEXT_DATA,
        "continues a text character by character",
        "dataset=text model=lstm, or experiment=text",
    ),
}
DIRECTIONS = ("min", "max")  # whether a monitored metric should fall or rise
FALLING = ("loss", "mse", "mae", "error")  # in a metric's name: it should fall (val/loss, val/rmse)
MODE_KEYS = ("callbacks.checkpoint.mode", "callbacks.early_stopping.mode", "scheduler.mode")


def check_combinations(cfg: DictConfig) -> list[str]:
    """A problem for each choice that does not fit another."""
    return [
        *_check_data(cfg),
        *_check_loss(cfg),
        *_check_optimizer(cfg),
        *_check_scheduler(cfg),
        *_check_modes(cfg),
    ]


def _check_data(cfg: DictConfig) -> list[str]:
    problems = []
    fractions = [lookup(cfg, f"dataset.{key}") for key in ("val_fraction", "test_fraction")]
    total = sum(v for v in fractions if is_number(v))
    if total >= 1:
        problems.append(
            f"dataset.val_fraction + dataset.test_fraction = {total:g}: leaves nothing to train on; "
            "type fractions that add up to less than 1, e.g. dataset.val_fraction=0.15 dataset.test_fraction=0.15"
        )
    if not lookup(cfg, "dataset.num_workers"):
        for key, off in (("persistent_workers", "false"), ("prefetch_factor", "null")):
            value = lookup(cfg, f"dataset.{key}")
            if value not in (False, None):
                problems.append(
                    f"dataset.{key} = {str(value).lower()}: only for the DataLoader path; "
                    f"type dataset.num_workers=2 with it, or dataset.{key}={off}"
                )
    return problems


def _check_loss(cfg: DictConfig) -> list[str]:
    environment = lookup(cfg, "dataset._target_") == ENVIRONMENT_DATA or cfg.env is not None
    if lookup(cfg, "task._target_") == DQN_TASK or environment:
        return _check_environment(cfg)  # the outputs are the environment's actions, whatever the loss
    problem = lookup(cfg, "loss.problem")
    autoencoder = AUTOENCODERS.get(lookup(cfg, "model._target_"))
    if problem == RECONSTRUCTION or autoencoder is not None:
        return _check_reconstruction(cfg, problem, autoencoder)
    if lookup(cfg, "dataset._target_") == TEXT_DATA and lookup(cfg, "task._target_") != LANGUAGE_MODEL_TASK:
        return [
            "dataset = text: every character predicts the next, which this task does not train; "
            "type task=language_model model=lstm, or experiment=text"
        ]
    task_data = _check_task_data(cfg)
    if task_data:
        return task_data  # before the loss: the dataset decides which loss fits
    num_classes = lookup(cfg, "dataset.num_classes")
    dataset = lookup(cfg, "dataset.name")
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
    weights = lookup(cfg, "loss.criterion.class_weights")
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
    dqn, environment = lookup(cfg, "task._target_") == DQN_TASK, lookup(cfg, "dataset._target_") == ENVIRONMENT_DATA
    if not (dqn or environment):
        return [f"env.id = {lookup(cfg, 'env.id')}: played by task=dqn on dataset=environment; type experiment=dqn"]
    if not dqn:
        return ["dataset = environment is played by task=dqn; type task=dqn, or experiment=dqn"]
    if not environment:
        return [
            f"task = dqn plays a gymnasium environment, not dataset {lookup(cfg, 'dataset.name')}; "
            "type experiment=dqn (env=cartpole, or env=acrobot with it), without dataset="
        ]
    model = lookup(cfg, "model._target_")
    if model != DQN_MODEL:
        return [f"model = {model}: DQN's Q-network reads observation vectors; type model=mlp (model.hidden=[...])"]
    return []


def _check_reconstruction(cfg: DictConfig, problem: str, autoencoder: str | None) -> list[str]:
    """task=autoencoder|vae train their own model under loss=reconstruction, and nothing else does; any dataset's
    inputs can be reconstructed."""
    task = RECONSTRUCTING_TASKS.get(lookup(cfg, "task._target_"))
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
        return [f"model = {lookup(cfg, 'model._target_')}: task={task} trains model={task}; type model={task}"]
    if problem != RECONSTRUCTION:
        return [
            f"loss: task={task} compares each output with its input, not {problem} targets; type loss=reconstruction"
        ]
    return []


def _check_task_data(cfg: DictConfig) -> list[str]:
    """task=forecast reads dataset=timeseries's windows and task=language_model dataset=text's characters, no other
    dataset of dlrun's (one of the user's own may give the same batches)."""
    task, dataset = lookup(cfg, "task._target_"), lookup(cfg, "dataset._target_")
    if task not in DATA_OF_TASK or not str(dataset).startswith("dlrun."):
        return []
    option, needed, what, fix = DATA_OF_TASK[task]
    if dataset == needed:
        return []
    return [f"task = {option} {what}, not dataset {lookup(cfg, 'dataset.name')}; type {fix}"]


def _loss_name(problem: str) -> str:
    return {"classification": "cross_entropy", "binary": "bce"}[problem]


def _check_optimizer(cfg: DictConfig) -> list[str]:
    if lookup(cfg, "optimizer.nesterov") and not lookup(cfg, "optimizer.momentum"):
        return ["optimizer.nesterov = true needs momentum; type optimizer.momentum=0.9 or optimizer.nesterov=false"]
    return []


def _check_scheduler(cfg: DictConfig) -> list[str]:
    if not cfg.scheduler:
        return []
    problems = []
    interval = lookup(cfg, "scheduler.interval")
    if interval not in ("epoch", "step"):
        problems.append(f"scheduler.interval = {interval}: unknown; type scheduler.interval=epoch or step")
    if lookup(cfg, "scheduler.warmup_epochs") and lookup(cfg, "scheduler.monitor") is not None:
        problems.append("scheduler.warmup_epochs: plateau cannot warm up; type scheduler.warmup_epochs=0")
    return problems


def _check_modes(cfg: DictConfig) -> list[str]:
    """Every monitor's mode is min or max (anything else would be read as max). A mode that only repeats another
    (early stopping's is ${callbacks.checkpoint.mode}) is reported there."""
    problems = []
    for key in MODE_KEYS:
        parent, _, name = key.rpartition(".")
        node = lookup(cfg, parent)
        if not OmegaConf.is_dict(node) or name not in node or OmegaConf.is_interpolation(node, name):
            continue
        if node[name] not in DIRECTIONS:
            monitor = str(node.get("monitor"))
            direction = "min" if any(word in monitor for word in FALLING) else "max"
            problems.append(
                f"{key} = {node[name]}: must be min (the metric should fall, like val/loss) or max (it should rise, "
                f"like val/acc); type {key}={direction} for {monitor}"
            )
    return problems

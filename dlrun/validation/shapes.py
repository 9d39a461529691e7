"""The config against the data, once the data is read (dlrun/data/spec.py) and before the model is built: the input
shape the config states, the classes the loss needs, and the kind of data the task trains on. Each problem a line
naming the key and what to type; dlrun/run.py raises them as one ConfigError before anything of the run is written.
"""

from omegaconf import DictConfig, OmegaConf

from dlrun.data.spec import DataSpec
from dlrun.data.transforms import resized_shape
from dlrun.errors import ConfigError
from dlrun.validation.combinations import FORECAST_TASK, LANGUAGE_MODEL_TASK
from dlrun.validation.values import AUTO, lookup

CLASS_PROBLEMS = {"classification": "cross_entropy", "binary": "bce"}  # loss.problem: the loss option of it


def refuse_what_does_not_fit(cfg: DictConfig, spec: DataSpec) -> None:
    problems = check_shapes(cfg, spec)
    if problems:
        raise ConfigError(*problems)


def check_shapes(cfg: DictConfig, spec: DataSpec) -> list[str]:
    """A problem for each setting that does not fit the data the dataset gave."""
    return [*_check_in_shape(cfg, spec), *_check_classes(cfg, spec), *_check_task(cfg, spec)]


def _check_in_shape(cfg: DictConfig, spec: DataSpec) -> list[str]:
    shape = list(spec.in_shape)
    if not shape or not all(isinstance(size, int) and size >= 1 for size in shape):
        return [f"dataset: its inputs have the shape {shape}, which no model takes; check the dataset.* keys"]
    stated = lookup(cfg, "dataset.in_shape")
    if stated is None or stated == AUTO or not OmegaConf.is_list(stated):
        return []
    resize = OmegaConf.select(cfg, "dataset.transforms.resize", default=None)
    expected = resized_shape(list(stated), resize)
    if expected == shape:
        return []
    after = f" (after dataset.transforms.resize = {list(resize)}: {expected})" if expected != list(stated) else ""
    return [
        f"dataset.in_shape = {list(stated)}{after}: the data gives inputs of shape {shape}; "
        f"type dataset.in_shape=[{','.join(map(str, shape))}]" + (" dataset.transforms.resize=null" if after else "")
    ]


def _check_classes(cfg: DictConfig, spec: DataSpec) -> list[str]:
    problem = lookup(cfg, "loss.problem")
    if problem not in CLASS_PROBLEMS or spec.tokens:
        return []
    count = spec.num_classes or 0
    if count >= 2:
        return []
    return [
        f"loss = {CLASS_PROBLEMS[problem]}: the data holds {count} class{'' if count == 1 else 'es'}, and a classifier "
        "needs at least 2 (zero outputs, or one that is always right); type loss=mse for a number target, or "
        "point the dataset at data with 2 or more classes"
    ]


def _check_task(cfg: DictConfig, spec: DataSpec) -> list[str]:
    task = lookup(cfg, "task._target_")
    if task == FORECAST_TASK and (spec.tokens or spec.class_names or len(spec.in_shape) != 2):
        return [
            f"task = forecast reads windows of a series [steps, values] with a number to forecast, and the data gives "
            f"inputs of shape {list(spec.in_shape)}{' with classes' if spec.class_names else ''}; "
            "type dataset=timeseries loss=mse, or experiment=timeseries"
        ]
    if task == LANGUAGE_MODEL_TASK and not spec.tokens:
        return [
            f"task = language_model continues a text token by token, and the data gives inputs of shape "
            f"{list(spec.in_shape)}, not tokens; type dataset=text model=lstm, or experiment=text"
        ]
    return []

"""validate(cfg): every impossible value of a composed config at once, before anything is built.

Imports no torch (but to look for an asked-for GPU), so that config errors are reported in a fraction of a second.
"""

from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlrun.config import RunConfig, TrainerConfig
from dlrun.errors import ConfigError
from dlrun.validation.combinations import check_combinations
from dlrun.validation.values import LOSS_KEYS, check_values

# The config groups a run cannot do without, and the option conf/config.yaml picks for each.
REQUIRED_GROUPS = {
    "dataset": "digits",
    "model": "mlp",
    "task": "supervised",
    "loss": "cross_entropy",
    "optimizer": "adam",
    "callbacks": "default",
}


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every impossible value, before anything is built."""
    _check_present(cfg)
    _check_resolves(cfg)
    problems = [*check_values(cfg), *check_combinations(cfg), *_check_resume(cfg)]
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


def _check_resume(cfg: DictConfig) -> list[str]:
    if cfg.resume not in ("never", "auto"):
        return [f"resume = {cfg.resume}: unknown; type resume=auto or resume=never"]
    if cfg.ckpt_path is None or Path(cfg.ckpt_path).expanduser().is_file():
        return []
    return [
        f"ckpt_path = {cfg.ckpt_path}: no such file; "
        "type the path of a last.pt or best.pt, e.g. outputs/<run>/checkpoints/last.pt"
    ]

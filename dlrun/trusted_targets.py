"""The code a checkpoint may make dlrun run.

A checkpoint's stored config names the `_target_`s that rebuild its model (and, for dlrun-export's check, its
dataset), and a crafted file that torch loads with weights_only=True could still name any callable: a function that
creates, empties or copies files, say. dlrun-export, dlrun-predict and dlrun-sample therefore rebuild only from the
targets of dlrun's own conf/model/ and conf/dataset/ options, or of those in a config dir the user gives
(--config-dir). Imports no torch.
"""

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dlrun.config import CONFIG_DIR
from dlrun.errors import ConfigError

GROUPS = ("model", "dataset")  # the config nodes a checkpoint's model and data are rebuilt from


def check(config: dict, *, key: str, path: Path, config_dirs: Sequence[str | Path] = ()) -> None:
    """A ConfigError naming every _target_ of config's model and dataset that no option of GROUPS names."""
    allowed = set(shipped_targets()).union(*(option_targets(Path(folder).expanduser()) for folder in config_dirs))
    named = {target for group in GROUPS for target in targets(config.get(group))}
    refused = sorted(named - allowed)
    if refused:
        raise ConfigError(
            f"{key} = {path}: its config names {', '.join(refused)}, which no model or dataset option of dlrun "
            "(conf/model/, conf/dataset/) builds; a checkpoint does not choose the code dlrun runs: type the path of "
            "a checkpoint that dlrun wrote, or add --config-dir DIR for the config dir that holds your own option"
        )


@functools.cache
def shipped_targets() -> frozenset[str]:
    return frozenset(option_targets(CONFIG_DIR))


def option_targets(config_dir: Path) -> set[str]:
    """The _target_s the model and dataset options of a config dir name, nested ones too."""
    files = [file for group in GROUPS for file in sorted((config_dir / group).rglob("*.yaml"))]
    return {target for file in files for target in targets(OmegaConf.to_container(OmegaConf.load(file)))}


def targets(node) -> Iterator[str]:
    """Every _target_ value in a config node and its children."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "_target_" and isinstance(value, str):
                yield value
            else:
                yield from targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from targets(value)

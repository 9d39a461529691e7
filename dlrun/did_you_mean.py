"""Did-you-mean for the overrides Hydra refuses: an unknown key, group or option, and the closest existing ones; an
option whose Hydra plugin comes with an extra that is not installed (hydra/launcher=slurm), and the extra.

Asked only once Hydra has failed: the config is composed again with the overrides that pick existing options, and
each refused override is matched (difflib) against the keys and options there are.
"""

import difflib
from pathlib import Path

from omegaconf import OmegaConf

from dlrun import extras

MATCHES = 3  # at most this many suggestions per override
ANYWHERE_CUTOFF = 0.8  # how alike (difflib's ratio) a key elsewhere in the config must be to be suggested


def suggestions(parsed: list, config_dirs: list[Path]) -> list[str]:
    """One line per override (key=value, group=option) naming a key, group or option that does not exist: the closest
    existing ones and what to type."""
    groups = _groups(config_dirs)
    cfg = _compose(parsed, groups, config_dirs)
    lines = extras.missing_for_options(
        [(override.key_or_group, choice) for override in parsed for choice in _choices(override)]
    )
    for override in parsed:
        key = override.key_or_group
        if override.is_add() or override.is_force_add() or override.package or key.split(".")[0].startswith("hydra"):
            continue
        if key in groups:
            lines += _unknown_options(key, _choices(override), groups[key])
            continue
        kind = "group" if "/" in key else "key"
        if kind == "group":
            matches = difflib.get_close_matches(key, list(groups), n=MATCHES)
        elif cfg is not None and not _has_key(cfg, key):
            matches = _close_keys(cfg, key)
        else:
            continue
        if matches:
            value = override.input_line.partition("=")[2]
            lines.append(f"{key}: no such {kind}; did you mean {_either(matches)}? type {matches[0]}={value}")
    return lines


def config_dirs(args: list[str], config_dir: Path) -> list[Path]:
    """dlrun's conf/ and, from --config-dir DIR (-cd DIR), the user's own."""
    dirs = [config_dir]
    for index, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and index + 1 < len(args):
            dirs.append(Path(args[index + 1]).expanduser().resolve())
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.partition("=")[2]).expanduser().resolve())
    return dirs


def _groups(config_dirs: list[Path]) -> dict[str, list[str]]:
    """Every config group (dataset, dataset/transforms, ...) and its options, the YAML files in its folder."""
    groups: dict[str, set[str]] = {}
    for directory in config_dirs:
        for file in directory.rglob("*.yaml"):
            if file.parent != directory:
                groups.setdefault(file.parent.relative_to(directory).as_posix(), set()).add(file.stem)
    return {group: sorted(options) for group, options in groups.items()}


def _choices(override) -> list[str]:
    """The options an override picks: one, or several in a sweep (model=mlp,cnn)."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    choices = value.list if isinstance(value, ChoiceSweep) else [value]
    return [choice for choice in choices if isinstance(choice, str)]


def _unknown_options(group: str, choices: list[str], options: list[str]) -> list[str]:
    lines = []
    for choice in choices:
        matches = difflib.get_close_matches(choice, options, n=MATCHES) if choice not in options else []
        if matches:
            lines.append(
                f"{group} = {choice}: no such option; did you mean {_either(matches)}? type {group}={matches[0]}"
            )
    return lines


def _compose(parsed: list, groups: dict[str, list[str]], config_dirs: list[Path]) -> dict | None:
    """The config's keys (unresolved) with the overrides' existing options chosen (they bring their keys), or failing
    that the defaults'; None when neither composes."""
    from hydra import compose, initialize_config_dir

    chosen = [
        f"{override.key_or_group}={choices[0]}"
        for override in parsed
        if override.key_or_group in groups
        and (choices := _choices(override))
        and all(choice in groups[override.key_or_group] for choice in choices)
    ]
    search_path = [f"hydra.searchpath=[{','.join(f'file://{d}' for d in config_dirs[1:])}]"] if config_dirs[1:] else []
    with initialize_config_dir(str(config_dirs[0]), version_base="1.3"):
        for overrides in (search_path + chosen, search_path, []):
            try:
                return OmegaConf.to_container(compose("config", overrides=overrides))
            except Exception:  # whatever fails to compose: try with fewer overrides
                continue
    return None


def _has_key(cfg: dict, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _close_keys(cfg: dict, key: str) -> list[str]:
    """The existing keys closest to key: each part corrected in turn (trainer.max_epoch -> trainer.max_epochs), or
    else a key anywhere in the config ending like it (maxepochs -> trainer.max_epochs)."""
    corrected = _corrected(cfg, key.split("."), "")
    if corrected:
        return corrected[:MATCHES]
    parts = key.split(".")
    endings: dict[str, list[str]] = {}  # the last len(parts) parts of each key: the keys ending so
    for path in _paths(cfg, ""):
        if len(path.split(".")) >= len(parts):
            endings.setdefault(".".join(path.split(".")[-len(parts) :]), []).append(path)
    closest = difflib.get_close_matches(key, list(endings), n=1, cutoff=ANYWHERE_CUTOFF)
    return [path for ending in closest for path in endings[ending]][:MATCHES]


def _corrected(node, parts: list[str], prefix: str) -> list[str]:
    """The existing keys under node spelled like parts, each part as it is or its closest names there."""
    if not parts:
        return [prefix.rstrip(".")]
    if not isinstance(node, dict):
        return []
    part, rest = parts[0], parts[1:]
    keys = {str(key): key for key in node}
    names = [part] if part in keys else difflib.get_close_matches(part, list(keys), n=MATCHES)
    return [key for name in names for key in _corrected(node[keys[name]], rest, f"{prefix}{name}.")]


def _paths(node, prefix: str) -> list[str]:
    """Every key of the config, dotted, nodes and leaves."""
    if not isinstance(node, dict):
        return []
    paths = []
    for name, value in node.items():
        path = f"{prefix}{name}"
        paths += [path, *_paths(value, f"{path}.")]
    return paths


def _either(matches: list[str]) -> str:
    return matches[0] if len(matches) == 1 else f"{', '.join(matches[:-1])} or {matches[-1]}"

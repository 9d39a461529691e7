"""Command-line overrides that Hydra would refuse with OmegaConf's raw message and "Set HYDRA_FULL_ERROR=1": a value
of the wrong type for a key of the schemas (trainer.max_epochs=2.5, trainer.compile=maybe), and a value with letters
beyond ASCII typed unquoted (name=café), which Hydra's override grammar takes only in quotes. Each is a ConfigError
naming the key, what it takes and what to type. Imports no torch.
"""

import re
import types
import typing
from dataclasses import fields
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from dlrun.config import CONFIG_DIR, RunConfig, TrainerConfig, trainer_defaults
from dlrun.errors import ConfigError

# What each type of a schema key takes, in words, and a value of it when the key's default is null.
TAKES = {int: ("a whole number", 1), float: ("a number", 1.0), bool: ("true or false", False), str: ("a string", "x")}
# A word holding a letter beyond ASCII, between the characters of the override grammar's lists and dicts.
NON_ASCII_WORD = re.compile(r"[^\[\]{},:=\s'\"]*[^\x00-\x7f][^\[\]{},:=\s'\"]*")


def check_quoting(args: list[str]) -> None:
    """name=café: Hydra's grammar reads letters beyond ASCII inside quotes only; the same value quoted works. (A value
    with quotes in it is left to Hydra's own message.)"""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    problems = []
    for arg in args:
        key, equals, value = arg.partition("=")
        if arg.startswith("-") or not equals or value.isascii() or "'" in value or '"' in value:
            continue
        try:
            parser.parse_override(arg)
        except HydraException:  # the lexer's "token recognition error", or the parser's
            quoted = NON_ASCII_WORD.sub(lambda word: f"'{word.group()}'", value)
            problems.append(
                f'{key} = {value}: Hydra reads letters beyond ASCII only inside quotes; type "{key}={quoted}" '
                "(the double quotes keep the single ones from the shell)"
            )
    if problems:
        raise ConfigError(*problems)


def check_types(parsed: list) -> None:
    """Each override of a typed schema key (the top-level keys, trainer.*) with a value of that type."""
    from hydra.core.override_parser.types import ChoiceSweep, OverrideType

    schema = OmegaConf.structured(RunConfig)
    problems = []
    for override in parsed:
        key = override.key_or_group
        kind = _schema_types().get(key)
        if kind is None or override.type not in (OverrideType.CHANGE, OverrideType.FORCE_ADD):
            continue
        value = override.value()
        sweep = isinstance(value, ChoiceSweep)  # -m trainer.max_epochs=1,2.5: each value
        for choice in value.list if sweep else [value]:
            try:
                OmegaConf.update(schema, key, choice, merge=True)
            except ValidationError:
                problems.append(_problem(key, kind, choice if sweep else override.get_value_element_as_str()))
    if problems:
        raise ConfigError(*problems)


def _problem(key: str, kind: Any, value: Any) -> str:
    optional = type(None) in typing.get_args(kind)
    base = next((t for t in (typing.get_args(kind) or (kind,)) if t is not type(None)), kind)
    takes, fallback = TAKES[base]
    example = _defaults().get(key)
    example = fallback if example is None else example
    shown = str(example).lower() if isinstance(example, bool) else example
    return f"{key} = {value}: takes {takes}{' or null' if optional else ''}; type e.g. {key}={shown}"


def _schema_types() -> dict[str, Any]:
    """The schema keys with a type OmegaConf checks (not Any), by their dotted names."""
    typed = {f.name: f.type for f in fields(RunConfig)} | {f"trainer.{f.name}": f.type for f in fields(TrainerConfig)}
    return {key: kind for key, kind in typed.items() if _checked(kind)}


def _checked(kind: Any) -> bool:
    members = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    return all(member in TAKES or member is type(None) for member in members)


def _defaults() -> dict[str, Any]:
    """conf/'s values of the schema keys: conf/config.yaml's top-level ones and conf/trainer/default.yaml's."""
    top = OmegaConf.load(CONFIG_DIR / "config.yaml")
    plain = {
        key: top[key] for key in top if key not in ("defaults", "hydra") and not OmegaConf.is_interpolation(top, key)
    }
    return plain | {f"trainer.{key}": value for key, value in trainer_defaults().items()}

"""Hydra's sweep syntax (interval, tag(log, ...), range, choice) as Optuna distributions, and trial params back as
overrides."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.types import IntervalSweep, Override, QuotedString, RangeSweep


@dataclass
class Dimension:
    key: str  # the override's key, e.g. optimizer.lr, model.hidden, optimizer (a config group)
    distribution: Any  # an optuna.distributions.BaseDistribution
    strings: dict[Any, str] = field(default_factory=dict)  # a categorical choice -> its text in an override

    def override(self, value: Any) -> str:
        if self.strings:
            return f"{self.key}={self.strings[value]}"
        return f"{self.key}={value!r}" if isinstance(value, float) else f"{self.key}={value}"


@dataclass
class SearchSpace:
    dimensions: dict[str, Dimension]  # by the Optuna parameter name: the override key
    fixed: list[str]  # overrides every trial gets

    @property
    def distributions(self) -> dict[str, Any]:
        return {name: dimension.distribution for name, dimension in self.dimensions.items()}

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides: the fixed ones, then one per searched key."""
        return [*self.fixed, *(self.dimensions[name].override(params[name]) for name in self.dimensions)]


def search_space(overrides: list[Override]) -> SearchSpace:
    """Sweeps become dimensions, plain values fixed overrides; a later override of a key replaces an earlier one."""
    by_key: dict[str, Override] = {}
    for override in overrides:
        by_key.pop(override.get_key_element(), None)
        by_key[override.get_key_element()] = override
    dimensions, fixed = {}, []
    for key, override in by_key.items():
        if override.is_sweep_override():
            dimensions[key] = Dimension(key, *_distribution(override))
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return SearchSpace(dimensions, fixed)


def _distribution(override: Override) -> tuple[Any, dict[Any, str]]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log), {}
        return FloatDistribution(value.start, value.end, log=log), {}
    if isinstance(value, RangeSweep) and value.step > 0:
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(values[0], values[-1], step=value.step), {}
        return FloatDistribution(values[0], values[-1], step=float(value.step)), {}
    # choice(...), a,b,c, glob(...) of config group options, a descending range: categorical
    elements = [element.text if isinstance(element, QuotedString) else element for element in override.sweep_iterator()]
    strings = list(override.sweep_string_iterator())
    choices = [e if isinstance(e, bool | int | float | str) else s for e, s in zip(elements, strings, strict=True)]
    return CategoricalDistribution(choices), dict(zip(choices, strings, strict=True))

"""An Optuna search space from Hydra's sweep syntax (`hydra.sweeper.params` and `-m` overrides):
`choice(a, b)` or `a,b`, `range(1, 5)`, `interval(0, 1)`, `int(interval(8, 64))` and
`tag(log, interval(...))`, the syntax of Hydra's own Optuna sweeper, so configs written for it keep
working. Every parameter is checked before the first trial: an empty choice, a reversed
interval, a key the config does not have are refused in one line naming the parameter.

Optuna loads only when a space is built: Hydra reads this module for every multirun.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf

from taco.errors import ConfigError

_ABSENT = object()


@dataclass
class SearchSpace:
    """What a trial samples (`distributions`) and the overrides every trial shares (`fixed`);
    `labels` turns a sampled choice back into its override text."""

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # name -> key as written (`+key` kept)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's parameters as Hydra overrides, after the shared ones."""
        sampled = [
            f"{self.keys[name]}={self.labels.get(name, {}).get(value, _text(value))}"
            for name, value in params.items()
        ]
        return [*self.fixed, *sampled]

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's space: only choices and ranges have a grid."""
        from optuna.distributions import CategoricalDistribution

        intervals = [n for n, d in self.distributions.items() if not _is_grid(d)]
        if intervals:
            raise ConfigError(
                f"hydra.sweeper.params.{intervals[0]}: the grid sampler needs choice(...) or "
                "range(...), not an interval; use another sampler, or list the values"
            )
        return {
            name: list(d.choices)
            if isinstance(d, CategoricalDistribution)
            else list(range(d.low, d.high + 1, d.step))
            for name, d in self.distributions.items()
        }


def search_space(
    params: Mapping[str, Any] | None, arguments: Sequence[str], config: DictConfig | None = None
) -> SearchSpace:
    """`params` (the sweeper's config) and the command line's overrides -> a `SearchSpace`.
    A command-line override of a key in `params` replaces it, as in Hydra's Optuna sweeper.
    With `config`, each key must name a config key (or be added with `+`)."""
    parser = OverridesParser.create()
    written = [f"{key}={value}" for key, value in (params or {}).items()]
    by_key: dict[str, Override] = {}
    for line in [*written, *arguments]:  # later wins: the command line over the config
        try:
            (override,) = parser.parse_overrides([line])
        except Exception as exc:  # Hydra's grammar: `choice()`, an unclosed bracket
            raise ConfigError(f"hydra.sweeper.params: {line}: {_first_line(exc)}") from None
        by_key[override.get_key_element().lstrip("+~")] = override
    space = SearchSpace()
    for name, override in by_key.items():
        if config is not None and not override.is_add() and not override.is_force_add():
            if OmegaConf.select(config, name, default=_ABSENT) is _ABSENT and not _group(
                config, name
            ):
                raise ConfigError(
                    f"hydra.sweeper.params.{name}: no such key in the config; check its "
                    f"spelling, or add it with +{name}=..."
                )
        if not override.is_sweep_override():
            space.fixed.append(override.input_line or f"{name}={override.value()}")
            continue
        space.keys[name] = override.get_key_element()
        space.distributions[name], labels = distribution(name, override)
        if labels:
            space.labels[name] = labels
    return space


def distribution(name: str, override: Override) -> tuple[Any, dict[Any, str]]:
    """One swept override -> an Optuna distribution (and each choice's override text)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    where = f"hydra.sweeper.params.{name}"
    if isinstance(value, ChoiceSweep) or isinstance(value, RangeSweep) and value.shuffle:
        values = list(override.sweep_iterator())
        texts = list(override.sweep_string_iterator())
        if not values:
            raise ConfigError(f"{where}: an empty choice: give at least one value")
        choices = [v if _primitive(v) else t for v, t in zip(values, texts, strict=True)]
        if len(set(map(repr, choices))) < len(choices):
            raise ConfigError(f"{where}: a value is listed twice in {texts}")
        return CategoricalDistribution(choices), dict(zip(choices, texts, strict=True))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{where}: range({start}, {stop}, {step}) is empty")
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(step)), {}
        return CategoricalDistribution(values), {}
    if isinstance(value, IntervalSweep):
        low, high, log = value.start, value.end, "log" in value.tags
        if low is None or high is None or not low < high:
            raise ConfigError(
                f"{where}: interval({low}, {high}) is empty: the lower bound comes first"
            )
        if log and low <= 0:
            raise ConfigError(f"{where}: a log interval needs a lower bound above 0; got {low}")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log), {}
        return FloatDistribution(float(low), float(high), log=log), {}
    raise ConfigError(f"{where}: {override.input_line!r} is not a sweep Optuna can sample")


def _group(config: DictConfig, name: str) -> bool:
    """A config group choice (`model=vgg16`): its key is in Hydra's runtime choices."""
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    return name in choices


def _is_grid(dist: Any) -> bool:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    return isinstance(dist, CategoricalDistribution) or (
        isinstance(dist, IntDistribution) and not dist.log
    )


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _text(value: Any) -> str:
    return "null" if value is None else str(value)


def _first_line(exc: Exception) -> str:
    """Hydra's reason, without its "Error parsing override" header and its link."""
    lines = [
        line
        for line in str(exc).strip().splitlines()
        if not line.startswith(("Error parsing override", "See https://"))
    ]
    return lines[0] if lines else type(exc).__name__

"""The config check: the type and the allowed range of every key users set, checked on the
composed config before anything is built or any run opens.

Types are plain annotations; ranges and choices ride on them (`Annotated[int, Range(1)]`,
`Literal["squash", "letterbox"]`). Each rule is stated once, beside what takes the value: a node
built from its `_target_` (`Built`: the trainer, data module, generator, logger, callbacks, a
model family and its network builder, a user's own) is checked by its class's constructor
annotations, so a class brings its own rules; one without `**kwargs` refuses a key it does not
take (`+trainer.foo=1`). Keys no class takes (the process settings, the model table,
augmentation) have their dataclass here. A group absent from the config is skipped. Only the
standard library loads here, and the built classes' modules are light (Keras loads inside their
methods): the check runs in a fraction of a second, before TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from hydra.utils import instantiate

from taco.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """low <= value <= high (strict where `open_low` / `open_high`); None: unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def holds(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return low_ok and high_ok

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {_number(self.high)}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Built:
    """A node built from its `_target_`, checked by the rules its class states once, beside
    itself: its constructor's annotations (`Annotated[int, Range(1)]`, `Literal[...]`). A class
    without `**kwargs` refuses a key it does not take; `extra` (a dataclass) checks keys of the
    node that are not constructor arguments (the trainer's process settings); `given` names
    arguments the builder passes itself (the Trainer's callbacks), not config keys."""

    extra: type | None = None
    given: tuple[str, ...] = ()


AtLeast1 = Range(1)
NonNegative = Range(0)
Positive = Range(0, open_low=True)
Probability = Range(0, 1)
DropoutRate = Annotated[float, Range(0, 1, open_high=True)]
Fraction = Range(0, 1, open_low=True, open_high=True)

PositiveInt = Annotated[int, AtLeast1]
Count = Annotated[int, NonNegative]
Seed = Annotated[int, Range(0, 2**32 - 1)]
Mode = Literal["auto", "min", "max"]


# ---------------------------------------------------------------------- the groups
# a side of the square images models see: above it a cache holds GBs per thousand images, and
# no keras.applications backbone was trained beyond 600 px
MAX_IMAGE_SIZE = 2048

# oneDNN's names for ONEDNN_MAX_CPU_ISA (trainer.cpu_isa)
CPU_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_AMX",
    "ALL",
)


@dataclass
class ProcessSettings:
    """`trainer.*` keys applied to the process before Keras loads (`taco.process`), not taken
    by the Trainer."""

    cpu_threads: PositiveInt | None = None
    cpu_isa: Literal[CPU_ISAS] | None = None
    compile_cache: str | None = None


@dataclass
class ModelSchema:
    name: str
    image_size: Annotated[int, Range(8, MAX_IMAGE_SIZE)]
    backbone: str
    weights: str | None
    # checked by the family's own constructor annotations (its module loads Keras lazily)
    classifier: Annotated[dict, Built()]


@dataclass
class TransformSchema:
    """What taco states of every transform; the rest of its arguments albumentations checks
    when `check_augmentation` builds it."""

    p: Annotated[float, Probability]
    strict: bool = True


@dataclass
class AugmentationSchema:
    p: Annotated[float, Probability]
    transforms: list[TransformSchema]
    strict: bool = True
    seed: Seed | None = None


@dataclass
class PathsSchema:
    root_dir: str
    data_dir: str
    cache_dir: str
    output_dir: str


# each callback (conf/callbacks/, or a user's own `+callbacks.mine._target_=...`) is checked by
# its class's constructor annotations; null drops one
Callbacks = dict[str, Annotated[dict, Built()] | None]


@dataclass
class TacoSchema:
    """The whole training (and stats) config: every group and top-level key (a key it does not
    name is refused, `+foo=1`; `hydra` is Hydra's to check)."""

    seed: Seed
    task_name: str
    ckpt_path: str | None
    trainer: Annotated[dict, Built(ProcessSettings, given=("callbacks",))]
    dataset: Annotated[dict, Built()]
    model: ModelSchema
    augmentation: AugmentationSchema | None
    callbacks: Callbacks | None
    logger: Annotated[dict, Built()]
    paths: PathsSchema
    optimized_metric: str | None = None  # a sweep's objective (hparams_search)
    tags: dict[str, Any] | None = None  # free: the user's own run tags
    # free: a study's per-model lookup tables (conf/experiment/), read into other keys through
    # `${per_model:key}`, which those keys' own rules check
    study: dict[str, Any] | None = None


@dataclass
class EvalSchema(TacoSchema):
    """`taco-eval` (conf/eval.yaml): the training config plus the model to score."""

    run_id: str | int | None = None  # all digits: read as a number (taco.config.run_reference)
    model_dir: str | None = None


@dataclass
class ExplainSchema(EvalSchema):
    """`taco-explain` (conf/explain.yaml)."""

    sweep: str | int | None = None
    split: Literal["train", "val", "test"] = "test"
    images: str | None = None
    on_bad_image: Literal["error", "skip"] = "error"
    output: str = ""
    log: bool = False
    per_class: PositiveInt = 6
    patch: PositiveInt = 16
    stride: PositiveInt = 16


# ---------------------------------------------------------------------- checking
def better(metric: str, mode: str = "auto") -> str:
    """Which way `metric` improves ("min" or "max"); `auto`: a loss lower, every other higher."""
    if mode == "auto":
        return "min" if metric.endswith("loss") else "max"
    return mode


def check_config(config: Mapping[str, Any], schema: type = TacoSchema) -> None:
    """Raise ConfigError naming the first key whose value the schema does not allow."""
    known = {f.name for f in dataclasses.fields(schema)} | {"hydra"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"{unknown[0]}={_show(config[unknown[0]])} is not a key of this command's config "
            f"(remove +{unknown[0]} or correct its name; the keys: {', '.join(sorted(known))})"
        )
    problem = _check_fields(config, schema, "")
    if problem:
        key, value, allowed = problem
        raise ConfigError(f"{key}={_show(value)} is not allowed: expected {allowed}")


# Hydra's own keys of an instantiated node
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def _check_fields(node: Mapping[str, Any], schema: type, prefix: str) -> tuple | None:
    hints = typing.get_type_hints(schema, include_extras=True)
    for item in dataclasses.fields(schema):
        if item.name not in node:
            continue
        problem = _check_value(node[item.name], hints[item.name], f"{prefix}{item.name}")
        if problem:
            return problem
    return None


def _check_value(value: Any, tp: Any, key: str) -> tuple | None:
    """None when `value` fits `tp`, else (key, value, what is allowed)."""
    built = _built_rule(tp)
    if built is not None:
        return _check_built(value, built, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            return key, value, f"a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}"
        return _check_fields(value, tp, f"{key}.")
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _check_union(value, typing.get_args(tp), key)
    if origin is dict and typing.get_args(tp) and typing.get_args(tp)[1] is not Any:
        if not isinstance(value, Mapping):
            return key, value, "a mapping"
        for name, element in value.items():
            problem = _check_value(element, typing.get_args(tp)[1], f"{key}.{name}")
            if problem:
                return problem
        return None
    if origin in (list, Sequence):
        if not isinstance(value, list | tuple):
            return key, value, f"a list of {_describe(typing.get_args(tp)[0])}"
        for i, element in enumerate(value):
            problem = _check_value(element, typing.get_args(tp)[0], f"{key}[{i}]")
            if problem:
                return problem
        return None
    if _fits(value, tp):
        return None
    return key, value, _describe(tp)


def _built_rule(tp: Any) -> Built | None:
    if typing.get_origin(tp) is Annotated:
        return next((r for r in typing.get_args(tp)[1:] if isinstance(r, Built)), None)
    return None


def _check_built(node: Any, rule: Built, key: str) -> tuple | None:
    if not isinstance(node, Mapping):
        return key, node, "a mapping with a _target_"
    target = node.get("_target_")
    rules = constructor_rules(str(target)) if target else None
    if rules is None:  # no class to ask (building it will say why)
        return None
    params, closed = rules
    params = {name: tp for name, tp in params.items() if name not in rule.given}
    extra = {f.name for f in dataclasses.fields(rule.extra)} if rule.extra else set()
    if closed:
        known = set(params) | extra
        unknown = sorted(set(node) - known - _HYDRA_KEYS)
        if unknown:
            name = f"{key}.{unknown[0]}"
            allowed = f"one of the keys of {target}: {', '.join(sorted(known))}"
            return name, node[unknown[0]], f"{allowed} (remove {name} or correct its name)"
    for name, tp in params.items():
        if name in node:
            problem = _check_value(node[name], tp, f"{key}.{name}")
            if problem:
                return problem
    between = _config_problem(str(target))  # a class's rule between its keys, if it has one
    problem = between(node) if between else None
    if problem:
        return f"{key}.{problem[0]}", problem[1], problem[2]
    if rule.extra:
        return _check_fields({k: v for k, v in node.items() if k in extra}, rule.extra, f"{key}.")
    return None


@functools.cache
def constructor_rules(target: str) -> tuple[dict[str, Any], bool] | None:
    """The rules a class states for its keys: each constructor argument's annotation, and
    whether it takes no others (no `**kwargs`); None when the target cannot be imported."""
    built = _target_class(target)
    if built is None:
        return None
    init = built.__init__ if isinstance(built, type) else built
    signature = inspect.signature(init)
    hints = _hints(init)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = {
        n: hints.get(n, Any)
        for n, p in signature.parameters.items()
        if n != "self" and p.kind in kinds
    }
    closed = all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return params, closed


def _config_problem(target: str) -> Any:
    """The class's `config_problem(node)`: a rule between keys, or None without one."""
    return getattr(_target_class(target), "config_problem", None)


def target_class(target: str) -> Any:
    """The class (or function) a `_target_` names, or None when it cannot be imported."""
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


# the config check asks for the same few classes for every key: looked up once. Not for Hydra's
# plugins (`taco.sweeps.hydra_core`): Hydra's plugin scan executes their modules again
_target_class = functools.cache(target_class)


def _hints(function: Any) -> dict[str, Any]:
    """Each argument's annotation, resolved one by one: a name imported only for type checkers
    (`keras.Model` in a module that loads Keras lazily) leaves only that argument unchecked."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:
        pass
    namespace = getattr(function, "__globals__", {})
    hints = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
        except Exception:
            hints[name] = Any
    return hints


def _check_union(value: Any, arms: tuple, key: str) -> tuple | None:
    problems = [_check_value(value, arm, key) for arm in arms]
    if any(p is None for p in problems):
        return None
    inner = [p for p in problems if p[0] != key]  # a nested key at fault says more
    return inner[0] if inner else (key, value, " or ".join(_describe(a) for a in arms))


def _fits(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *rules = typing.get_args(tp)
        return _fits(value, base) and all(r.holds(value) for r in rules if isinstance(r, Range))
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin is dict:
        return isinstance(value, Mapping)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is Any:
        return True
    if isinstance(origin, type):  # Mapping[str, Any], Sequence[int], ...: the container kind
        return isinstance(value, origin)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *rules = typing.get_args(tp)
        bounds = " and ".join(str(r) for r in rules if isinstance(r, Range))
        return f"{_describe(base)} {bounds}".strip()
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, Sequence):
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return "null" if tp is type(None) else names.get(tp, getattr(tp, "__name__", str(tp)))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------- the rule of one key
def rule_for(key: str, config: Mapping[str, Any], schema: type = TacoSchema) -> Any:
    """The annotation that checks the dotted `key` of `config`, or None where no rule reaches
    it: the test that walks every key of every command asks this, so a key added without a
    rule fails it."""
    tp: Any = schema
    node: Any = config
    for part in key.split("."):
        tp = _child_rule(tp, node, part)
        if tp is None:
            return None
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = None
    return tp


def _child_rule(tp: Any, node: Any, name: str) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):  # the arm a container takes
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        fitting = [a for a in arms if _check_value(node, a, "") is None] or arms
        tp = fitting[0]
    built = _built_rule(tp)
    if built is not None:
        target = node.get("_target_") if isinstance(node, Mapping) else None
        rules = constructor_rules(str(target)) if target else None
        params = {} if rules is None else rules[0]
        if name in params and name not in built.given:
            return params[name]
        extra = typing.get_type_hints(built.extra, include_extras=True) if built.extra else {}
        return extra.get(name)
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp, include_extras=True).get(name)
    origin = typing.get_origin(tp)
    if origin is dict and typing.get_args(tp):
        return typing.get_args(tp)[1]
    if origin in (list, Sequence) and name.isdigit():
        return typing.get_args(tp)[0]
    return None


# ---------------------------------------------------------------------- augmentation
def check_augmentation(node: Mapping[str, Any] | None, key: str = "augmentation") -> None:
    """Build the augmentation: albumentations checks its own arguments (its transforms' pydantic
    schemas, `strict: true` refusing an unknown one), here in a second instead of once the data
    is loaded; its first complaint becomes one line naming the key."""
    if not node:
        return

    for i, transform in enumerate(node.get("transforms") or []):
        _build_or_refuse(instantiate, transform, f"{key}.transforms.{i}")
    _build_or_refuse(instantiate, node, key)


def _build_or_refuse(instantiate: Any, node: Any, key: str) -> None:
    try:
        instantiate(node)
    except Exception as exc:
        cause = exc.__cause__ or exc
        chain = [cause, cause.__cause__, cause.__context__]
        errors = next((e.errors for e in chain if callable(getattr(e, "errors", None))), None)
        if errors is not None:  # pydantic (albumentations wraps it): which argument and why
            found = errors()
            name = str((found[0].get("loc") or ("?",))[0])
            value = node.get(name, found[0].get("input")) if isinstance(node, Mapping) else None
            why = [e.get("msg", "") for e in found if str((e.get("loc") or ("?",))[0]) == name]
            raise ConfigError(  # a union's arms each say why: "a valid tuple or a valid number"
                f"{key}.{name}={_show(value)} is not allowed: {' or '.join(dict.fromkeys(why))} "
                f"({node.get('_target_', 'albumentations')})"
            ) from None
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"{key} cannot be built: {reason}") from None

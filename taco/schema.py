"""The config schema: the type and the allowed range of every key users set, one dataclass per
config group, checked on the composed config before anything is built or any run opens.

Types are plain annotations; ranges and choices ride on them (`Annotated[int, Range(1)]`,
`Literal["squash", "letterbox"]`). A key the schema does not name is not checked (a user's own
callback or model family brings its own keys), except in a node built by one of a schema's
`TARGETS` (taco's Trainer, data module, logger and callbacks): there the schema names every
argument, and a key it does not know (`+trainer.foo=1`) is refused. A group absent from the
config is skipped. Only the standard library loads here: the check runs in about a millisecond,
before TensorFlow.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

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


AtLeast1 = Range(1)
NonNegative = Range(0)
Positive = Range(0, open_low=True)
Probability = Range(0, 1)
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
class TrainerSchema:
    TARGETS: ClassVar[tuple[str, ...]] = ("taco.training.trainer.Trainer",)
    max_epochs: PositiveInt
    threshold: Literal["tuned"] | Annotated[float, Probability]
    threshold_min_positives: PositiveInt
    seed: Seed | None
    deterministic: bool
    cpu_threads: PositiveInt | None
    cpu_isa: Literal[CPU_ISAS] | None
    limit_train_batches: PositiveInt | None
    limit_val_batches: PositiveInt | None
    limit_test_batches: PositiveInt | None
    fast_dev_run: bool
    overfit_batches: Count
    check_val_every_n_epoch: PositiveInt
    accelerator: Literal["auto", "cpu", "gpu"]
    devices: Literal["auto"] | PositiveInt
    precision: Literal[
        32, "32", "16-mixed", "bf16-mixed", "float32", "mixed_float16", "mixed_bfloat16"
    ]
    backend: Literal["tensorflow", "jax", "torch"]
    profiler: Literal["simple"] | None


@dataclass
class SplitSchema:
    train: Annotated[float, Fraction]
    val: Annotated[float, Fraction]
    test: Annotated[float, Fraction]


@dataclass
class GeneratorSchema:
    num_images: PositiveInt
    seed: Seed
    image_size: list[Annotated[int, Range(8)]]
    imbalance: Annotated[float, Probability]


@dataclass
class DatasetSchema:
    TARGETS: ClassVar[tuple[str, ...]] = ("taco.data.datamodule.TacoDataModule",)
    name: str
    root: str
    annotation_file: str
    label_level: str
    min_images: Count
    rare: Literal["merge", "drop"]
    unlabeled: Literal["keep", "drop"]
    split: SplitSchema
    batch_size: PositiveInt
    resize: Literal["squash", "letterbox"]
    on_bad_image: Literal["error", "skip"]
    max_pixels: PositiveInt
    image_size: PositiveInt
    seed: Seed
    split_seed: Seed
    decode_workers: PositiveInt | None
    num_workers: Count | Literal["auto"]
    prefetch_factor: PositiveInt
    generator: GeneratorSchema | None
    folds: Annotated[int, Range(2)] | None = None
    fold: Count = 0
    missing_hint: str = ""
    cache_dir: str | None = None
    augmentation: Any = None  # the augmentation group, checked there


@dataclass
class BuildSchema:
    """`model.classifier.build`: the Keras network (CNN or backbone + head)."""

    filters: list[PositiveInt]
    convs_per_block: PositiveInt
    dense_units: Count
    dropout: Annotated[float, Range(0, 1, open_high=True)]
    batch_norm: bool
    backbone: str
    weights: str | None


@dataclass
class ClassifierSchema:
    """`model.classifier`: the keys of the Keras and the forest families (each has a subset)."""

    learning_rate: Annotated[float, Positive]
    loss: Literal["bce", "weighted_bce", "focal"]
    focal_gamma: Annotated[float, NonNegative]
    head_epochs: Count | None
    fine_tune_layers: Count
    fine_tune_lr_factor: Annotated[float, Positive]
    build: BuildSchema
    n_estimators: PositiveInt
    max_depth: PositiveInt | None
    min_samples_leaf: PositiveInt
    max_features: Literal["sqrt", "log2"] | Annotated[float, Range(0, 1, open_low=True)] | None
    n_jobs: int
    random_state: Seed
    batch_size: PositiveInt


@dataclass
class ModelSchema:
    name: str
    image_size: Annotated[int, Range(8, MAX_IMAGE_SIZE)]
    backbone: str
    weights: str | None
    classifier: ClassifierSchema


@dataclass
class TransformSchema:
    p: Annotated[float, Probability]


@dataclass
class AugmentationSchema:
    p: Annotated[float, Probability]
    transforms: list[TransformSchema]


@dataclass
class MonitorSchema:
    monitor: str
    mode: Mode


@dataclass
class EarlyStoppingSchema(MonitorSchema):
    TARGETS: ClassVar[tuple[str, ...]] = ("taco.training.callbacks.EarlyStopping",)
    min_delta: Annotated[float, NonNegative]
    patience: PositiveInt


@dataclass
class ModelCheckpointSchema(MonitorSchema):
    TARGETS: ClassVar[tuple[str, ...]] = ("taco.training.callbacks.ModelCheckpoint",)
    dirpath: str | None
    save_last: bool
    save_best: bool
    restore_best: bool


@dataclass
class LearningRateScheduleSchema:
    TARGETS: ClassVar[tuple[str, ...]] = ("taco.training.callbacks.LearningRateSchedule",)
    schedule: Literal["cosine", "step", "constant"]
    warmup_epochs: Count
    min_factor: Annotated[float, Range(0, 1, open_low=True)]
    step_epochs: PositiveInt
    gamma: Annotated[float, Range(0, 1, open_low=True)]


@dataclass
class CallbacksSchema:
    early_stopping: EarlyStoppingSchema | None
    model_checkpoint: ModelCheckpointSchema | None
    lr_schedule: LearningRateScheduleSchema | None


@dataclass
class LoggerSchema:
    TARGETS: ClassVar[tuple[str, ...]] = ("taco.tracking.mlflow_logger.MLflowLogger",)
    tracking_uri: str | None
    experiment_name: str
    run_name: str | None
    tags: dict[str, Any] | None
    store_timeout: Annotated[float, NonNegative]


@dataclass
class TacoSchema:
    """The whole training (and eval, stats) config."""

    seed: Seed
    task_name: str
    ckpt_path: str | None
    trainer: TrainerSchema
    dataset: DatasetSchema
    model: ModelSchema
    augmentation: AugmentationSchema | None
    callbacks: CallbacksSchema | None
    logger: LoggerSchema
    tags: dict[str, Any] | None = None


# ---------------------------------------------------------------------- checking
def check_config(config: Mapping[str, Any], schema: type = TacoSchema) -> None:
    """Raise ConfigError naming the first key whose value the schema does not allow."""
    problem = _check_fields(config, schema, "")
    if problem:
        key, value, allowed = problem
        raise ConfigError(f"{key}={_show(value)} is not allowed: expected {allowed}")


# Hydra's own keys of an instantiated node
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def _check_fields(node: Mapping[str, Any], schema: type, prefix: str) -> tuple | None:
    hints = typing.get_type_hints(schema, include_extras=True)
    if node.get("_target_") in getattr(schema, "TARGETS", ()):
        known = {f.name for f in dataclasses.fields(schema)}
        unknown = sorted(set(node) - known - _HYDRA_KEYS)
        if unknown:
            key = f"{prefix}{unknown[0]}"
            allowed = f"one of the keys of {node['_target_']}: {', '.join(sorted(known))}"
            return key, node[unknown[0]], f"{allowed} (remove {key} or correct its name)"
    for item in dataclasses.fields(schema):
        if item.name not in node:
            continue
        problem = _check_value(node[item.name], hints[item.name], f"{prefix}{item.name}")
        if problem:
            return problem
    return None


def _check_value(value: Any, tp: Any, key: str) -> tuple | None:
    """None when `value` fits `tp`, else (key, value, what is allowed)."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            return key, value, f"a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}"
        return _check_fields(value, tp, f"{key}.")
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _check_union(value, typing.get_args(tp), key)
    if origin is list:
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
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return "null" if tp is type(None) else names.get(tp, getattr(tp, "__name__", str(tp)))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."

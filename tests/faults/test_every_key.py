"""Fault suite, every key of every command: each leaf of each command's default config is set to
a value of the wrong type and, where its rule has a range, to values outside it, and the
command's config check must refuse each, naming the key. A key added later without a rule
fails here. The commands themselves (one line, exit 2, no run, fast) are checked below it."""

from __future__ import annotations

import copy
import re
import time
import typing
from typing import Annotated, Any, Union

import pytest
from hydra import compose, initialize_config_dir

from taco.config import CONF_DIR, register_resolvers, resolved_config
from taco.errors import ConfigError
from taco.schema import (
    _HYDRA_KEYS,
    EvalSchema,
    ExplainSchema,
    Range,
    TacoSchema,
    check_augmentation,
    check_config,
    rule_for,
)

# command -> (its config, its schema, whether it builds the augmentation to check it)
COMMANDS = {
    "taco-train": ("config", TacoSchema, True),
    "taco-eval": ("eval", EvalSchema, False),
    "taco-explain": ("explain", ExplainSchema, False),
    "taco-stats": ("stats", TacoSchema, False),
}

# leaves that truly accept any value of any type, each with its reason
ACCEPTS_ANYTHING = {
    # an interpolation of `augmentation` (conf/dataset/*.yaml: `augmentation: ${augmentation}`):
    # the data module takes the built pipeline; its keys are checked as `augmentation.*`
    r"dataset\.augmentation\..*": "the same node as augmentation.*, checked there",
}

# per command: leaves it does not use, so only their types are checked, not albumentations' own
# argument rules (building the pipeline would import albumentations for nothing)
NOT_USED = {
    name: {r"augmentation\.transforms\.\d+\.(?!p$|strict$).*": f"{name} does not augment"}
    for name in ("taco-eval", "taco-explain", "taco-stats")
}


def _config(name: str) -> dict:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=["paths.output_dir=/nonexistent/out"])
    return resolved_config(cfg)


def _leaves(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    elif isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{prefix}{i}.")
    else:
        yield prefix[:-1], node


def _set(config: dict, key: str, value: Any) -> dict:
    changed = copy.deepcopy(config)
    *path, last = key.split(".")
    node: Any = changed
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return changed


def _check(config: dict, schema: type, augmentation: bool) -> None:
    check_config(config, schema)
    if augmentation:
        check_augmentation(config.get("augmentation"))


def _wrong_type(value: Any) -> Any:
    """A value of another type than the leaf's default."""
    return [1, 2] if value is None or isinstance(value, str) else "not-a-value"


def _ranges(tp: Any) -> list[Range]:
    if typing.get_origin(tp) is Annotated:
        base, *rules = typing.get_args(tp)
        return [r for r in rules if isinstance(r, Range)] + _ranges(base)
    if typing.get_origin(tp) in (Union, typing.get_origin(int | None)):
        return [r for arm in typing.get_args(tp) for r in _ranges(arm)]
    return []


def _outside(rule: Range, integer: bool) -> list[float]:
    step = 1 if integer else 0.5
    values = []
    if rule.low is not None:
        values.append(rule.low if rule.open_low else rule.low - step)
    if rule.high is not None:
        values.append(rule.high if rule.open_high else rule.high + step)
    return [int(v) if integer else float(v) for v in values]


def _free(key: str, name: str) -> bool:
    patterns = {**ACCEPTS_ANYTHING, **NOT_USED.get(name, {})}
    return any(re.fullmatch(pattern, key) for pattern in patterns)


def _refused(config: dict, schema: type, augmentation: bool, key: str, value: Any) -> str:
    """'' when the check refuses `key=value` naming the key, else what went wrong."""
    try:
        _check(_set(config, key, value), schema, augmentation)
    except ConfigError as exc:
        said = re.sub(r"\[(\d+)\]", r".\1", str(exc))
        return "" if key in said else f"refused, but the message names another key: {exc}"
    return "accepted"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_key_has_a_rule_that_refuses_a_wrong_value(name):
    config_name, schema, augmentation = COMMANDS[name]
    config = _config(config_name)
    _check(config, schema, augmentation)  # the defaults pass
    walked, problems = 0, []
    started = time.perf_counter()
    for key, value in _leaves(config):
        if key.rsplit(".", 1)[-1] in _HYDRA_KEYS or _free(key, name):
            continue
        walked += 1
        tp = rule_for(key, config, schema)
        if tp is None and not key.startswith("augmentation."):  # albumentations' own rules
            problems.append(f"{key}: no rule states what it takes")
            continue
        wrong = _wrong_type(value)
        why = _refused(config, schema, augmentation, key, wrong)
        if why:
            problems.append(f"{key}={wrong!r}: {why}")
        integer = isinstance(value, int) and not isinstance(value, bool)
        for rule in _ranges(tp):
            for outside in _outside(rule, integer):
                why = _refused(config, schema, augmentation, key, outside)
                if why:
                    problems.append(f"{key}={outside!r} (rule {rule}): {why}")
    assert not problems, f"{name}: {len(problems)} of {walked} keys:\n" + "\n".join(problems)
    assert walked >= 90, f"{name}: only {walked} keys walked"
    assert time.perf_counter() - started < 30


def test_an_unknown_top_level_key_is_refused():
    config = _config("explain")
    with pytest.raises(ConfigError, match=r"^foo=1 is not a key of this command's config"):
        check_config({**config, "foo": 1}, ExplainSchema)


@pytest.mark.parametrize(
    ("name", "args", "said"),
    [
        ("taco-train", ["callbacks.where_it_looks.stride=0"], "callbacks.where_it_looks.stride=0"),
        ("taco-train", ["callbacks.error_gallery.per_class=-1"], "per_class=-1 is not allowed"),
        ("taco-train", ["augmentation.transforms.2.contrast_limit=a"], "contrast_limit='a'"),
        ("taco-train", ["+foo=1"], "foo=1 is not a key of this command's config"),
        ("taco-train", ["foo=1"], "Could not override 'foo'. To append to your config use +foo=1"),
        ("taco-train", ["model=nope"], "Available options in 'model': cnn,"),
        ("taco-explain", ["run_id=abc", "stride=0"], "stride=0 is not allowed"),
        ("taco-explain", ["run_id=abc", "patch=-3"], "patch=-3 is not allowed"),
        ("taco-explain", ["run_id=abc", "per_class=[NoSuchClass]"], "per_class=['NoSuchClass']"),
        ("taco-explain", ["run_id=abc", "foo=1"], "Could not override 'foo'"),
        ("taco-eval", ["run_id=abc", "+x=1"], "x=1 is not a key"),
        ("taco-stats", ["callbacks.progress_bar.refresh_rate=x"], "refresh_rate='x'"),
        ("taco-train", ["dataset.folds=5", "dataset.fold=5"], "< dataset.folds=5"),
    ],
)
def test_each_command_refuses_in_one_line_before_any_run(
    command, mlflow_uri, tmp_path, name, args, said
):
    started = time.perf_counter()
    proc = command(name, *args, f"paths.data_dir={tmp_path}/data", f"hydra.run.dir={tmp_path}/r")
    seconds = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), proc.stderr
    assert said in lines[0]
    assert not (tmp_path / "data").exists()
    import mlflow

    assert not mlflow.MlflowClient(mlflow_uri).search_runs(["0"])  # no run opened
    assert seconds < 5  # in-process: the check alone (a fresh process adds its imports)


def test_a_missing_sweeper_plugin_is_one_line(command, tmp_path):
    pytest.importorskip("hydra_plugins")
    import importlib.util

    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper"):
        pytest.skip("hydra-optuna-sweeper is installed here")
    proc = command("taco-train", "-m", "hydra/sweeper=optuna", f"hydra.run.dir={tmp_path}/r")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "taco-train: error: hydra/sweeper=optuna is Hydra's own Optuna sweeper "
        "(hydra-optuna-sweeper, Optuna 2), not installed: hparams_search=optuna uses taco's "
        "(hydra/sweeper=taco_optuna, Optuna 5)"
    ]


@pytest.mark.parametrize(
    ("name", "args", "said"),
    [
        ("taco-compare", ["--resamples", "0"], "argument --resamples: 0 is below 1"),
        ("taco-compare", ["--alpha", "1.5"], "argument --alpha: 1.5 is not between 0 and 1"),
        ("taco-compare", ["--permutations", "x"], "argument --permutations: invalid integer"),
        ("taco-predict", ["--model", "x"], "the following arguments are required: images"),
        ("taco-predict", ["--model", "x", "--on-bad-image", "maybe", "d"], "invalid choice"),
    ],
)
def test_the_argument_commands_refuse_in_one_line(command, name, args, said):
    proc = command(name, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: ") and said in lines[0]
    assert lines[0].endswith(f"(see {name} --help)")

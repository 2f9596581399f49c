"""Fault suite, config: wrong types and out-of-range values are refused in about a second, with
exit code 2, one line naming the key, the value and what is allowed, and no MLflow run or store."""

import dataclasses
import os
import subprocess
import time

import numpy as np
import pytest

from taco.errors import ConfigError
from taco.schema import check_config
from taco.training.job import train
from tests.faults.common import runs
from tests.helpers import script

EXE = script("taco-train")


def _run(tmp_path, *overrides, multirun=False):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    where = f"hydra.sweep.dir={tmp_path}/multi" if multirun else f"hydra.run.dir={tmp_path}/run"
    cmd = [EXE, *(["-m"] if multirun else []), f"paths.data_dir={tmp_path}/data", where]
    start = time.perf_counter()
    out = subprocess.run([*cmd, *overrides], capture_output=True, text=True, env=env, timeout=120)
    return out, time.perf_counter() - start


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.max_epochs=abc",
            "trainer.max_epochs='abc' is not allowed: expected an integer >= 1",
        ),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is not allowed: expected an integer >= 1"),
        ("dataset.batch_size=0", "dataset.batch_size=0 is not allowed: expected an integer >= 1"),
        (
            "model.classifier.learning_rate=-0.01",
            "model.classifier.learning_rate=-0.01 is not allowed: expected a number > 0",
        ),
        (
            "dataset.resize=crop",
            "dataset.resize='crop' is not allowed: expected 'squash' | 'letterbox'",
        ),
    ],
)
def test_bad_value_is_one_line_exit_2_no_run(tmp_path, override, message):
    out, seconds = _run(tmp_path, override)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [f"taco-train: error: {message}"]
    assert "Traceback" not in out.stdout + out.stderr
    assert seconds < 10  # refused before TensorFlow, data or MLflow
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data").exists()


@pytest.mark.subprocess
def test_a_sweep_with_one_bad_value_is_refused_before_any_job(tmp_path):
    out, seconds = _run(tmp_path, "seed=1,2", "trainer.max_epochs=2,abc", multirun=True)
    assert out.returncode == 2
    assert "taco-train: error: job #1 [" in out.stderr and "trainer.max_epochs='abc'" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and seconds < 10


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("learning_rate", 0, "a number > 0"),
        ("n_estimators", 0, "an integer >= 1"),
        ("loss", "hinge", "'bce' | 'weighted_bce' | 'focal'"),
    ],
)
def test_classifier_keys_of_both_families(compose_cfg, key, value, allowed):
    from taco.config import resolved_config

    config = resolved_config(
        compose_cfg(["model=xception_rf" if key == "n_estimators" else "model=cnn"])
    )
    config["model"]["classifier"][key] = value
    with pytest.raises(ConfigError) as err:
        check_config(config)
    assert str(err.value) == f"model.classifier.{key}={value!r} is not allowed: expected {allowed}"


def test_probabilities_and_enums(compose_cfg):
    from taco.config import resolved_config

    for overrides, key in [
        (
            ["augmentation=heavy", "augmentation.transforms.0.p=1.5"],
            "augmentation.transforms[0].p=1.5",
        ),
        (["dataset.split.train=0"], "dataset.split.train=0"),
        (["trainer.precision=float64"], "trainer.precision='float64'"),
        (["callbacks.early_stopping.mode=up"], "callbacks.early_stopping.mode='up'"),
        (["dataset.unlabeled=hide"], "dataset.unlabeled='hide'"),
    ]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            check_config(resolved_config(compose_cfg(overrides)))
    check_config(resolved_config(compose_cfg(["trainer.threshold=0.4", "model=vgg16"])))


@pytest.mark.parametrize("rare", ["drop", "merge"])
def test_min_images_that_leaves_one_class_is_refused_before_a_run(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri, rare
):
    cfg = compose_cfg(
        [*tiny_overrides(tmp_path), "dataset.min_images=1000", f"dataset.rare={rare}"]
    )
    with pytest.raises(ConfigError, match="a classifier needs at least two") as err:
        train(cfg)
    assert "dataset.min_images=1000" in str(err.value)
    assert runs(mlflow_uri) == []


def test_a_split_without_a_training_image_for_a_class_is_refused():
    from taco.data.datamodule import _check_parts

    labels = np.zeros((20, 3), np.uint8)
    labels[:, 0] = 1
    labels[::2, 1] = 1
    labels[19, 2] = 1  # the one image of class 2 is in the test part
    parts = {"train": np.arange(0, 14), "val": np.arange(14, 17), "test": np.arange(17, 20)}
    with pytest.raises(ConfigError, match=r"leaves class\(es\) \['c'\] without a training image"):
        _check_parts(labels, parts, ["a", "b", "c"], 0)
    labels[19, 2] = 0  # absent everywhere: allowed (zero support)
    _check_parts(labels, parts, ["a", "b", "c"], 0)


@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        (["taco-stats", "dataset.batch_size=0"], 2, "taco-stats: error: dataset.batch_size=0 is"),
        (["taco-eval", "trainer.max_epochs=abc"], 2, "taco-eval: error: trainer.max_epochs='abc'"),
        (["taco-train", "dataset=taco"], 1, "taco-train: error: dataset folder not found"),
        (
            ["taco-compare", "--tracking-uri", "sqlite:///{tmp}/none.db"],
            1,
            "taco-compare: error: no",
        ),
        (["taco-predict", "--model-dir", "{tmp}", "{tmp}"], 1, "taco-predict: error: "),
    ],
)
def test_every_error_is_one_line_once_in_one_form(tmp_path, command, argv, code, line):
    args = [a.format(tmp=tmp_path) for a in argv[1:]]
    if argv[0] in ("taco-stats", "taco-eval", "taco-train"):
        args += [f"paths.data_dir={tmp_path}/data", f"hydra.run.dir={tmp_path}/run"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    out = command(argv[0], *args, env=env)
    assert out.returncode == code, out.stderr[-2000:]
    mine = [ln for ln in out.stderr.splitlines() if ln.startswith(argv[0])]
    assert len(mine) == 1 and mine[0].startswith(line), out.stderr[-2000:]
    message = mine[0].split(": error: ", 1)[1]
    assert (out.stdout + out.stderr).count(message) == 1  # not logged to the console as well
    assert "Traceback" not in out.stdout + out.stderr


def test_the_tags_example_of_the_config_works_as_written(compose_cfg):
    import re

    from taco.config import CONF_DIR
    from taco.training.job import run_tags

    (example,) = re.findall(r"e\.g\. (tags='[^']+')", (CONF_DIR / "config.yaml").read_text())
    override = example.replace("'", "")  # as the shell hands it over
    assert run_tags(compose_cfg([override]))["study"] == "baseline"
    cfg = compose_cfg(["experiment=default_cnn", "+tags.owner=me"])
    assert run_tags(cfg)["owner"] == "me" and run_tags(cfg)["study"] == "default_cnn"


def _too_many_devices() -> str:
    from taco.config import usable_cores

    return f"trainer.devices={usable_cores() + 1}"


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+trainer.foo=1"], "trainer.foo=1 is not allowed: expected one of the keys of taco."),
        (["+logger.store_timeot=5"], "logger.store_timeot=5 is not allowed: expected one of"),
        (["model.image_size=10000"], "model.image_size=10000 is not allowed: expected an integer"),
        (["trainer.accelerator=cpu", _too_many_devices()], "on the CPU, but this process may"),
        (["trainer.backend=tensorflow", "trainer.precision=bf16-mixed"], "precision=bf16-mixed"),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "n_jobs=0 is not allowed"),
    ],
)
def test_what_the_machine_cannot_run_is_one_line_in_a_second(tmp_path, overrides, message):
    multirun = overrides[0] == "-m"
    out, seconds = _run(tmp_path, *overrides[multirun:], multirun=multirun)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("taco-train: error: ") and message in line
    assert seconds < 10  # refused before TensorFlow, data or MLflow
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data").exists()


def test_the_image_cache_must_fit_on_its_disk_before_a_run_opens(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    from taco.errors import DiskFullError

    overrides = [*tiny_overrides(tmp_path), "model.image_size=2048"]  # 48 x 12.6 MB
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with pytest.raises(DiskFullError, match=r"the image cache needs 60\d\.\d MB in .* free"):
            train(compose_cfg([*overrides, f"paths.cache_dir={small}/cache"]))
    finally:
        subprocess.run(["umount", "-l", str(small)])
    assert runs(mlflow_uri) == []


def test_a_built_node_is_checked_by_the_rules_its_class_states():
    """trainer, logger and callbacks: each key's rule is its constructor argument's annotation,
    stated once beside the class; every key the shipped configs set has one."""
    import typing

    import yaml

    from taco.config import CONF_DIR
    from taco.schema import ProcessSettings, constructor_rules

    for group in ("trainer", "callbacks", "logger", "dataset"):
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            nodes = yaml.safe_load(path.read_text()) or {}
            nodes = nodes.values() if "_target_" not in nodes else [nodes]
            for node in (n for n in nodes if isinstance(n, dict) and "_target_" in n):
                params, _ = constructor_rules(node["_target_"])
                extra = {f.name for f in dataclasses.fields(ProcessSettings)}
                skip = {"_target_", "augmentation"}  # the built transform: its own group's
                skip |= extra if group == "trainer" else set()
                for key in set(node) - skip:
                    assert params.get(key, typing.Any) is not typing.Any, (path.name, key)


def test_an_unknown_dataset_key_is_refused(compose_cfg):
    from taco.config import resolved_config

    config = resolved_config(compose_cfg(["+dataset.batchsize=8"]))
    with pytest.raises(ConfigError, match="dataset.batchsize=8 is not allowed: expected one of"):
        check_config(config)

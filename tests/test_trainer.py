"""The Trainer's callbacks, checkpoints and resume, hardware settings and profiler."""

import csv
import json
import os
import platform
import re
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from taco.config import build
from taco.errors import ConfigError
from taco.training import checkpoint
from taco.training.callbacks import LearningRateSchedule
from taco.training.job import build_callbacks, train, trainer_node
from tests.helpers import script


def _runs(uri):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("taco")
    return client, client.search_runs([exp.experiment_id]) if exp else []


def _test_metrics(run):
    return {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}


@pytest.mark.backend
def test_resume_continues_the_same_run_with_the_same_result(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    base = [*tiny_overrides(tmp_path), "trainer.max_epochs=4"]
    interrupted = [
        *base,
        f"paths.output_dir={tmp_path}/interrupted",
        "+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch",
        "+callbacks.interrupt.epoch=2",
    ]
    with pytest.raises(KeyboardInterrupt):
        train(compose_cfg(interrupted))
    client, runs = _runs(mlflow_uri)
    assert [r.info.status for r in runs] == ["KILLED"]
    killed = runs[0]
    ckpt = tmp_path / "interrupted" / "checkpoints" / "last.ckpt"
    assert killed.data.tags["checkpoint"] == str(ckpt)
    assert checkpoint.read_meta(ckpt)["epoch"] == 2

    resumed_cfg = [*base, f"paths.output_dir={tmp_path}/interrupted", "ckpt_path=last"]
    train(compose_cfg(resumed_cfg))
    train(compose_cfg([*base, f"paths.output_dir={tmp_path}/straight"]))

    client, runs = _runs(mlflow_uri)
    by_id = {r.info.run_id: r for r in runs}
    assert len(runs) == 2  # the resumption reopened the killed run
    resumed = by_id[killed.info.run_id]
    straight = next(r for r in runs if r.info.run_id != killed.info.run_id)
    assert resumed.info.status == "FINISHED" and "error" not in resumed.data.tags
    assert "epoch 2" in resumed.data.tags["resumed_from"]
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "val/f1_macro")]
    assert sorted(steps) == [1, 2, 3, 4]
    for name in ("val/f1_macro", "train/loss"):
        a = [m.value for m in client.get_metric_history(resumed.info.run_id, name)]
        b = [m.value for m in client.get_metric_history(straight.info.run_id, name)]
        assert sorted(a) == sorted(b), name
    assert _test_metrics(resumed) == _test_metrics(straight)
    assert any(k.startswith("test/f1/") for k in _test_metrics(straight))
    # a finished run is not resumed again by `last`
    assert (tmp_path / "interrupted" / "checkpoints" / "COMPLETE").is_file()
    with pytest.raises(ConfigError, match="no interrupted run"):
        train(compose_cfg(resumed_cfg))


def test_resume_refuses_a_checkpoint_of_another_config(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    base = [*tiny_overrides(tmp_path), "trainer.max_epochs=3"]
    with pytest.raises(KeyboardInterrupt):
        train(
            compose_cfg(
                [
                    *base,
                    "+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch",
                    "+callbacks.interrupt.epoch=1",
                ]
            )
        )
    ckpt = tmp_path / "out" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="model.classifier.learning_rate"):
        train(compose_cfg([*base, "model.classifier.learning_rate=0.5", "ckpt_path=last"]))
    with pytest.raises(ConfigError, match="different config"):
        train(compose_cfg([*base, "seed=3", f"ckpt_path={ckpt}"]))
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(compose_cfg([*base, f"ckpt_path={tmp_path}/nothing.ckpt"]))
    _, runs = _runs(mlflow_uri)
    assert [r.info.status for r in runs] == ["KILLED"]  # refused before any run was opened


def test_callbacks_from_config_with_a_plain_keras_callback(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri, monkeypatch, capfd
):
    log_file = tmp_path / "keras_log.csv"
    cfg = compose_cfg(
        [
            *tiny_overrides(tmp_path),
            "trainer.max_epochs=4",
            "callbacks=[default,lr_schedule]",
            "+callbacks.hooks._target_=tests.helpers.RecordHooks",
            "+callbacks.csv._target_=keras.callbacks.CSVLogger",  # a plain Keras callback
            f"+callbacks.csv.filename={log_file}",
        ]
    )
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bars of a terminal
    assert list(cfg.callbacks) == [
        "model_checkpoint",
        "early_stopping",
        "progress_bar",
        "epoch_metrics",
        "augmentation_preview",
        "per_class_report",
        "per_class_curves",
        "where_it_looks",
        "error_gallery",
        "log_predictions",
        "log_model",
        "profile_report",
        "lr_schedule",
        "hooks",
        "csv",
    ]
    train(cfg)
    client, (run,) = _runs(mlflow_uri)
    history = {
        name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
        for name in ("val/f1_macro", "train/loss", "lr")
    }
    assert [s for s, _ in history["val/f1_macro"]] == [1, 2, 3, 4]
    rates = [v for _, v in sorted(history["lr"])]
    assert rates[0] == pytest.approx(cfg.model.classifier.learning_rate)
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0] / 10
    rows = list(csv.DictReader(log_file.open()))
    logged = [v for _, v in history["val/f1_macro"]]
    assert [float(r["val_f1_macro"]) for r in rows] == pytest.approx(logged)
    # tqdm bars with count, rate and ETA: each epoch, each validation pass and the test pass
    bars = capfd.readouterr().err
    for label in ("epoch 4/4", "validating", "testing"):
        bar = rf"{label}: +\d+%\|[^|]*\| \d+/\d+ \[[\d:]+<[\d:?]+, [?\d.]+(batch/s|s/batch)"
        assert re.search(bar, bars), label


def test_callback_hook_order_and_validation_interval(compose_cfg, tmp_path, tiny_overrides):
    cfg = compose_cfg(
        [
            *tiny_overrides(tmp_path),
            "logger=none",
            "callbacks=none",
            "trainer.max_epochs=3",
            "trainer.check_val_every_n_epoch=2",
        ]
    )
    from tests.helpers import RecordHooks

    hooks, dm = RecordHooks(), build(cfg.dataset)
    trainer = build(trainer_node(cfg.trainer), callbacks=[hooks])
    trainer.fit(build(cfg.model.classifier), dm)
    train_only = "['epoch_seconds', 'train/loss', 'train_seconds']"
    metrics = (
        "['epoch_seconds', 'train/loss', 'train_seconds', 'val/f1_macro', 'val/f1_macro_fixed', "
        "'val/loss']"
    )
    batches = ["batch"] * len(trainer.batches(dm, "train"))
    assert hooks.calls == [  # validation after epochs 2 and 3 (the last)
        "fit_start",
        "epoch_start:0",
        *batches,
        f"epoch_end:0:{train_only}",
        "epoch_start:1",
        *batches,
        f"epoch_end:1:{metrics}",
        "epoch_start:2",
        *batches,
        f"epoch_end:2:{metrics}",
        "fit_end",
    ]


def test_bad_callback_configs_fail_before_training(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    with pytest.raises(ConfigError, match="no _target_"):
        build_callbacks({"mine": {"patience": 3}})
    cfg = compose_cfg(
        [*tiny_overrides(tmp_path, own_data=True), "callbacks.early_stopping.monitor=val/f2"]
    )
    with pytest.raises(ConfigError, match="monitor must be one of"):
        train(cfg)
    cfg = compose_cfg(
        [*tiny_overrides(tmp_path, own_data=True), "+callbacks.odd._target_=collections.Counter"]
    )
    with pytest.raises(ConfigError, match="neither a taco.training.callbacks.Callback"):
        train(cfg)
    _, runs = _runs(mlflow_uri)
    assert runs == []  # refused while building: no run opened, no data prepared
    assert not (tmp_path / "out" / "checkpoints").exists()
    assert not (tmp_path / "data").exists()


def test_learning_rate_schedules():
    cosine = LearningRateSchedule("cosine", warmup_epochs=2, min_factor=0.1)
    factors = [cosine.factor(e, 12) for e in range(12)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert factors[-1] == pytest.approx(0.1) and factors[2:] == sorted(factors[2:], reverse=True)
    step = LearningRateSchedule("step", step_epochs=3, gamma=0.5)
    assert [step.factor(e, 9) for e in (0, 2, 3, 8)] == [1.0, 1.0, 0.5, 0.25]
    from taco.schema import check_config

    target = "taco.training.callbacks.LearningRateSchedule"  # its annotation is the rule
    with pytest.raises(ConfigError) as err:
        check_config({"callbacks": {"lr_schedule": {"_target_": target, "schedule": "linear"}}})
    assert str(err.value) == (
        "callbacks.lr_schedule.schedule='linear' is not allowed: "
        "expected 'cosine' | 'step' | 'constant'"
    )


def test_profiler_logs_time_per_stage(compose_cfg, tmp_path, tiny_overrides, mlflow_uri):
    train(compose_cfg([*tiny_overrides(tmp_path), "debug=profiler"]))
    client, (run,) = _runs(mlflow_uri)
    stages = {k.split("/")[1] for k in run.data.metrics if k.startswith("profile/")}
    expected = {"data", "train_batches", "validation", "checkpoint", "logging", "test", "fit"}
    assert expected <= {s.removesuffix("_seconds") for s in stages}
    m = run.data.metrics
    assert 0 < m["profile/data_seconds"] < m["profile/fit_seconds"] < m["profile/total_seconds"]
    table = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/profile.md")
    assert "| train_batches |" in table


# the GPU trainer's fit and test, in a fresh process: TensorFlow reads oneDNN's instruction-set
# cap (trainer.cpu_isa) once per process, and under the default AVX2 cap that an earlier
# in-process job may have set, oneDNN has no float16 convolution on CPUs with AVX512-FP16
MIXED_PRECISION = """
import json, sys
from hydra import compose, initialize_config_dir
from taco.config import CONF_DIR, build, register_resolvers
from taco.training.job import trainer_node
register_resolvers()
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose("config", sys.argv[1:])
dm, trainer = build(cfg.dataset), build(trainer_node(cfg.trainer))
classifier = build(cfg.model.classifier)
trainer.fit(classifier, dm)
result = trainer.test(classifier, dm)
import keras
conv, scores = classifier.model.get_layer("conv0_0"), classifier.model.get_layer("scores")
print(json.dumps({"precision": cfg.trainer.precision, "accelerator": cfg.trainer.accelerator,
    "conv": [conv.dtype_policy.name, conv.compute_dtype], "scores": scores.compute_dtype,
    "f1_macro": float(result.f1_macro), "global": keras.config.dtype_policy().name}))
"""


@pytest.mark.subprocess
@pytest.mark.backend
def test_gpu_trainer_runs_mixed_precision_on_cpu(tmp_path, tiny_overrides):
    args = [*tiny_overrides(tmp_path), "trainer=gpu", "logger=none"]
    out = subprocess.run(
        [sys.executable, "-c", MIXED_PRECISION, *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["precision"] == "16-mixed" and seen["accelerator"] == "gpu"
    assert seen["conv"] == ["mixed_float16", "float16"] and seen["scores"] == "float32"
    assert np.isfinite(seen["f1_macro"])
    assert seen["global"] == "float32"  # the global policy is left as it was


@pytest.mark.subprocess
@pytest.mark.backend
@pytest.mark.slow  # 20 s on TensorFlow, 24 s on JAX: make test-all runs it on both
def test_data_parallel_on_two_logical_cpus(tmp_path, tiny_overrides, mlflow_uri):
    exe = script("taco-train")
    cmd = [exe, *tiny_overrides(tmp_path), "trainer=cpu", "trainer.devices=2"]
    cmd.append(f"hydra.run.dir={tmp_path}/run")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data-parallel training on 2 devices" in proc.stdout + proc.stderr
    _, runs = _runs(mlflow_uri)
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["trainer.devices"] == "2"


def test_forest_checkpoint_state_round_trip():
    from sklearn.ensemble import RandomForestClassifier

    from taco.models.forest import ForestClassifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 2, size=(40, 3))
    a = ForestClassifier(n_estimators=5)
    a.forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    b = ForestClassifier(n_estimators=5)
    b.load_checkpoint_state(a.checkpoint_state())
    for pa, pb in zip(a.forest.predict_proba(x), b.forest.predict_proba(x), strict=True):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.slow  # about 50 s: a VGG16 three times; the CNN resume test covers the default run
def test_resume_inside_the_fine_tuning_stage_of_a_transfer_model(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    from tests.test_models import FAMILIES

    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith("model.")]
    base = [*tiny, *FAMILIES["vgg16"], "trainer.max_epochs=3"]
    interrupt = ["+callbacks.interrupt._target_=tests.helpers.InterruptAtEpoch"]
    with pytest.raises(KeyboardInterrupt):  # after epoch 2: the head epoch, one fine-tuning epoch
        train(compose_cfg([*base, *interrupt, "+callbacks.interrupt.epoch=2"]))
    train(compose_cfg([*base, "ckpt_path=last"]))
    train(compose_cfg([*base, f"paths.output_dir={tmp_path}/straight"]))
    _, runs = _runs(mlflow_uri)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    resumed, straight = sorted(runs, key=lambda r: "resumed_from" not in r.data.tags)
    assert "epoch 2" in resumed.data.tags["resumed_from"]
    assert _test_metrics(resumed) == _test_metrics(straight)


@pytest.mark.subprocess
def test_cpu_isa_caps_the_kernels_tensorflow_runs(tmp_path):
    """trainer.cpu_isa reaches oneDNN: its own log names the instruction set it dispatched."""
    pytest.importorskip("tensorflow")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("oneDNN's x86 instruction sets")
    code = (
        "from taco.process import limit_cpu_isa, use_backend\n"
        "use_backend('tensorflow'); limit_cpu_isa('AVX2')\n"
        "import tensorflow as tf\n"
        "tf.nn.conv2d(tf.ones([1, 8, 8, 3]), tf.ones([3, 3, 3, 4]), 1, 'SAME')\n"
    )
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "KERAS_BACKEND": "tensorflow"}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    isa = [line for line in (out.stdout + out.stderr).splitlines() if ",isa:" in line]
    assert isa and isa[0].endswith("isa:Intel AVX2"), isa

"""Keras backends: chosen before Keras is imported; a JAX run with `logger=none` imports neither
TensorFlow nor MLflow. (`make test` also runs every test marked `backend` on JAX.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest

from taco.errors import ConfigError
from taco.process import backend, use_backend
from taco.training.hardware import PRECISIONS, Hardware
from tests.helpers import script

TRAIN = script("taco-train")


@pytest.mark.subprocess
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_run_without_a_logger_needs_neither_tensorflow_nor_mlflow(tmp_path, tiny_overrides):
    blocked, tried = tmp_path / "blocked", tmp_path / "tried"
    for name in ("tensorflow", "mlflow"):  # importing either fails, and leaves a note
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"open({str(tried)!r}, 'a').write('{name}\\n')\n"
            f"raise ImportError('{name} is blocked')\n"
        )
    env = {**os.environ, "PYTHONPATH": f"{blocked}{os.pathsep}{os.getcwd()}"}
    env.pop("KERAS_BACKEND", None)
    cmd = [TRAIN, *tiny_overrides(tmp_path), "trainer.backend=jax", "logger=none"]
    cmd.append(f"hydra.run.dir={tmp_path}/run")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "macro F1" in proc.stdout
    assert (tmp_path / "out" / "checkpoints" / "COMPLETE").is_file()
    assert not tried.exists(), f"imported anyway: {tried.read_text().split()}"  # not even tried


@pytest.mark.subprocess
def test_a_backend_that_is_not_installed_is_one_line(tmp_path, tiny_overrides):
    missing = next((b for b in ("torch", "jax") if importlib.util.find_spec(b) is None), None)
    if missing is None:
        pytest.skip("every backend is installed here")
    cmd = [TRAIN, *tiny_overrides(tmp_path), f"trainer.backend={missing}", "logger=none"]
    cmd.append(f"hydra.run.dir={tmp_path}/run")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("taco-train: error: trainer.backend=")
    assert f"{missing} is not installed" in lines[-1]


@pytest.mark.backend
def test_switching_backends_inside_one_process_is_refused():
    import keras  # noqa: F401  (this test process runs Keras on one backend)

    other = "jax" if backend() != "jax" else "tensorflow"
    with pytest.raises(ConfigError, match="already imported"):
        use_backend(other)
    use_backend(backend())  # the running one is fine


@pytest.mark.backend
@pytest.mark.parametrize("name", ["32", 32, "16-mixed", "bf16-mixed", "mixed_bfloat16"])
def test_precision_names(name):
    from taco.schema import check_config

    assert Hardware(precision=name).precision == PRECISIONS[str(name)]
    trainer = {"_target_": "taco.training.trainer.Trainer", "precision": "64"}
    with pytest.raises(ConfigError, match="trainer.precision='64' is not allowed: expected 32"):
        check_config({"trainer": trainer})  # the rule: the Trainer's annotation, checked once

import os
import re
import subprocess
import sys
import time

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from taco.config import CONF_DIR, project_root
from tests.helpers import script


def test_default_composition(compose_cfg):
    cfg = compose_cfg()
    assert cfg.dataset.name == "synthetic"
    assert cfg.model.name == "cnn"
    assert cfg.trainer.max_epochs > 1
    assert cfg.logger._target_ == "taco.tracking.mlflow_logger.MLflowLogger"
    assert set(cfg) >= {"dataset", "augmentation", "model", "trainer", "logger", "seed", "paths"}
    assert cfg.paths.root_dir == str(project_root())


def test_overrides_pass_through(compose_cfg):
    cfg = compose_cfg(["model=cnn", "trainer.max_epochs=3", "seed=7", "dataset=taco"])
    assert cfg.trainer.max_epochs == 3 and cfg.seed == 7 and cfg.dataset.name == "taco"


def test_tracking_uri_is_absolute_and_env_overrides(compose_cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = compose_cfg().logger.tracking_uri
    assert uri == f"sqlite:///{project_root()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert compose_cfg().logger.tracking_uri == "sqlite:////tmp/elsewhere.db"


def test_unknown_group_value_names_the_group(compose_cfg):
    with pytest.raises(MissingConfigException) as err:
        compose_cfg(["model=resnet9000"])
    assert "model" in str(err.value) and "resnet9000" in str(err.value)


def test_unknown_key_is_refused(compose_cfg):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["trainer.max_epoch=3"])
    assert "max_epoch" in str(err.value)


@pytest.mark.subprocess
def test_startup_does_not_import_heavy_libraries():
    code = (
        "import sys, taco.cli.train; "
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.subprocess
def test_cfg_job_answers_quickly():
    exe = script("taco-train")
    start = time.perf_counter()
    out = subprocess.run([exe, "--cfg", "job", "model=cnn"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert "name: cnn" in out.stdout
    assert elapsed < 10  # about a second on an idle machine; generous for a loaded CI


def test_conf_groups_exist():
    for group in ("dataset", "augmentation", "model", "trainer", "logger"):
        assert any((CONF_DIR / group).glob("*.yaml")), group


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "command, says, not_listed",
    [
        ("taco-train", ["train one model", "Examples:", "hparams_search: optuna"], []),
        ("taco-stats", ["without training", "Examples:"], ["hparams_search: optuna"]),
        ("taco-eval", ["run_id=<MLflow run id>", "Examples:"], ["debug: fdr, limit"]),
        ("taco-explain", ["why a trained model fails", "sweep=<parent run id>", "Examples:"], []),
        ("taco-download", ["(default: 8)", "(default: <repo>/data/taco)"], []),
        ("taco-compare", ["outputs/compare/<date>/<time>"], []),
        ("taco-predict", ["$MLFLOW_TRACKING_URI or <repo>/mlflow.db", "--runtime"], []),
        ("taco-export", ["{onnx,litert}", "outputs/export/<source>/<format>-<quantize>"], []),
    ],
)
def test_help_describes_each_command(command, says, not_listed):
    import subprocess

    exe = script(command)
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps lines
    assert all(" ".join(s.split()) in text for s in says), out.stdout[:2000]
    assert not [n for n in not_listed if n in out.stdout]


def test_setup_installs_the_locked_versions():
    """`make setup` installs under constraints.txt: the versions CI tested, on every machine."""
    from importlib.metadata import version

    from taco.config import project_root

    lines = (project_root() / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
    for name in ("keras", "tensorflow", "jax", "mlflow", "numpy", "hydra-core", "scikit-learn"):
        assert version(name) == pins[name], name


def test_runs_started_in_the_same_second_get_folders_of_their_own():
    """The default run and sweep folders are dated to the second and end in the process id
    that resolved them (two `taco-train &` started together once shared one, and the second's
    checkpoints were refused as another live process's)."""

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from taco.config import CONF_DIR, register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    GlobalHydra.instance().clear()
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        folder = str(OmegaConf.select(cfg, key))
        assert folder.endswith(f"_{os.getpid()}"), (key, folder)
        assert re.search(r"/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d_\d+$", folder), (key, folder)


@pytest.mark.parametrize("typed", ["01234567", "61641851"])
def test_a_run_id_prefix_of_digits_is_looked_up_as_typed(typed, command, tmp_path, mlflow_uri):
    # Hydra reads an all-digit value as a number (01234567 as 1234567): the command takes the
    # override's own text back, so the lookup says what the user typed
    proc = command("taco-explain", f"sweep={typed}", f"hydra.run.dir={tmp_path}/r")
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and f"no run id starts with '{typed}'" in line, line

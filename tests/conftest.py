"""Shared fixtures: Hydra compose API, a throwaway MLflow store, a tiny synthetic data set."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from taco.config import CONF_DIR, register_resolvers

REAL_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "taco" / "annotations.json"
REAL_ANNOTATIONS = Path(os.environ.get("TACO_REAL_ANNOTATIONS", REAL_ANNOTATIONS))


def tiny_overrides(tmp_path: Path) -> list[str]:
    """A run that takes seconds: 48 small images, 32 px, two epochs."""
    return [
        f"paths.data_dir={tmp_path}/data",
        f"paths.output_dir={tmp_path}/out",
        "dataset.generator.num_images=48",
        "dataset.generator.image_size=[96,72]",
        "dataset.batch_size=16",
        "dataset.num_workers=0",  # no worker processes to start for 3 batches an epoch
        "model.image_size=32",
        "model.classifier.build.filters=[8,16]",
        "model.classifier.build.dense_units=16",
        "trainer.max_epochs=2",
    ]


@pytest.fixture(scope="session", autouse=True)
def contained_tempdir(tmp_path_factory: pytest.TempPathFactory):
    """Temporary files of the code under test, and of the commands it starts (MLflow downloads a
    model to a folder it never removes: 150 MB a VGG16), go under pytest's own base folder,
    which pytest prunes: a test run leaves nothing in /tmp."""
    folder = tmp_path_factory.mktemp("tmp", numbered=False)
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(folder))
    patch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    patch.undo()


@pytest.fixture
def compose_cfg():
    """compose(overrides) -> DictConfig, with Hydra's global state cleared around each use."""
    register_resolvers()

    def _compose(overrides: list[str] | None = None, config_name: str = "config"):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway SQLite store; the user's mlflow.db is never touched."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture
def real_annotations() -> Path:
    if not REAL_ANNOTATIONS.is_file():
        pytest.skip(f"real TACO annotations not found at {REAL_ANNOTATIONS}")
    return REAL_ANNOTATIONS

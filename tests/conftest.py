"""Shared fixtures: Hydra compose API, a throwaway MLflow store, a tiny synthetic data set.

What is the same for every test is made once a session (the tiny data set and its image cache,
an empty MLflow store with its tables); what a test writes goes under its own `tmp_path`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from taco.config import CONF_DIR, register_resolvers
from tests import tiny

REAL_ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "taco" / "annotations.json"
REAL_ANNOTATIONS = Path(os.environ.get("TACO_REAL_ANNOTATIONS", REAL_ANNOTATIONS))


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`paths.data_dir` of the tiny data set, written once a session; tests only read it (and
    share its image cache). A test that damages its data, or looks at what is written, asks
    `tiny_overrides(tmp_path, own_data=True)`."""
    from taco.config import build

    folder = tmp_path_factory.mktemp("tiny_data")
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=tiny.overrides(folder, folder / "out"))
    GlobalHydra.instance().clear()
    build(cfg.dataset).prepare_data()
    return folder


@pytest.fixture
def tiny_overrides(tiny_data: Path) -> Callable[..., list[str]]:
    """tiny_overrides(tmp_path) -> the overrides of a run that takes seconds (48 small images,
    32 px, two epochs): the session's data, outputs under `tmp_path`; own_data=True: a data
    folder of its own, `tmp_path / "data"`."""

    def overrides(tmp_path: Path, own_data: bool = False) -> list[str]:
        return tiny.overrides(tmp_path / "data" if own_data else tiny_data, tmp_path / "out")

    return overrides


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables, made once (MLflow's migrations take 1.5 s)."""
    from taco.tracking.store import ensure_store

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    ensure_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> str:
    """A throwaway SQLite store (a copy of the session's empty one) under `tmp_path`; the
    user's mlflow.db is never touched."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
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

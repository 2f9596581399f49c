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
from tests.helpers import script

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


@pytest.fixture(scope="session", autouse=True)
def users_folders_untouched():
    """No test writes into the checkout's own outputs/, multirun/, mlflow.db or mlruns/ (a
    command run without `hydra.run.dir`, an experiment made without an artifact location
    would): checked when the session ends."""
    root = Path(__file__).resolve().parents[1]
    watched = [root / n for n in ("outputs", "multirun", "mlflow.db", "mlartifacts", "mlruns")]

    def state() -> set[str]:
        found = {str(p) for p in watched if p.is_file()}
        for folder in (p for p in watched if p.is_dir()):
            found |= {str(p) for p in folder.rglob("*") if p.name == ".hydra"}
            found |= {str(p) for p in folder.iterdir()}
        return found | {f"{p}@{p.stat().st_mtime}" for p in watched if p.is_file()}

    before = state()
    yield
    new = sorted(state() - before)
    assert not new, f"tests wrote into the checkout: {new[:5]}"


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
    folder of its own, `tmp_path / "data"`; analysis=True: the analysis figures drawn too."""

    def overrides(tmp_path: Path, own_data: bool = False, analysis: bool = False) -> list[str]:
        data = tmp_path / "data" if own_data else tiny_data
        return tiny.overrides(data, tmp_path / "out", analysis=analysis)

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


@pytest.fixture
def command(capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """command("taco-train", *args, env={...}) -> CompletedProcess: the console script run in
    this process, as its shell would see it (exit code, stdout, stderr), for tests of what a
    command answers, where a fresh process adds only its imports (TensorFlow: 5 s). What the
    command changes in the process (Hydra's singletons, logging, environment, signal handlers,
    CPU affinity) is put back afterwards. A test of a fresh process's console or of signals
    starts the real command with `subprocess` and is marked `subprocess`."""
    import logging
    import logging.config
    import signal
    import subprocess
    import sys
    from importlib.metadata import entry_points

    from hydra.core.hydra_config import HydraConfig

    def run(name: str, *args: str, env: dict[str, str] | None = None):
        (script,) = entry_points(group="console_scripts", name=name)
        main = script.load()
        environ, cwd = dict(os.environ), os.getcwd()
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        loggers = [logging.root, *logging.Logger.manager.loggerDict.values()]
        saved = [
            (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled)
            for lg in loggers
            if isinstance(lg, logging.Logger)
        ]
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        os.environ.update(env or {})
        capfd.readouterr()
        try:
            with monkeypatch.context() as patch:
                patch.setattr(sys, "argv", [name, *args])
                # Hydra's logging setup (dictConfig) closes every handler of the process;
                # absl's then closes the stream it holds, pytest's capture file: keep them open
                patch.setattr(logging.config, "_clearExistingHandlers", logging._handlers.clear)
                code = main()
        except SystemExit as exc:
            code = exc.code
        finally:
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None
            os.environ.clear()
            os.environ.update(environ)
            os.chdir(cwd)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            for lg, kept, level, propagate, off in saved:
                lg.handlers[:], lg.level, lg.propagate, lg.disabled = kept, level, propagate, off
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
            _forget_job_settings()
        if not isinstance(code, int):  # sys.exit("message") prints it and exits 1
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess([name, *args], code, out, err)

    return run


def _forget_job_settings() -> None:
    """What a job set for its process beyond the environment: its feed cores, and JAX's
    persistent compilation cache (pointed into that test's tmp_path)."""
    import sys

    import taco.process

    taco.process._FEED_CORES = None
    if "jax" in sys.modules:
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()


@pytest.fixture
def process():
    """process("taco-train", *args, env={...}) -> CompletedProcess: the console script in a
    fresh process, for what only a process shows (its console from the first import, signals,
    launchers that start workers); same call as `command`."""
    import subprocess

    def run(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900):
        exe = script(name)
        return subprocess.run(
            [exe, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )

    return run


_HEAP_FROZEN = False


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Once Keras is loaded, what the session holds for good (the libraries' own objects) moves
    out of the garbage collector's view (`gc.freeze`): each job's `clear_session` collects
    only what tests made since, not the whole of TensorFlow (0.4 s a job, growing)."""
    global _HEAP_FROZEN
    import gc
    import sys

    if not _HEAP_FROZEN and "keras" in sys.modules:
        gc.collect()
        gc.freeze()
        _HEAP_FROZEN = True

import mlflow
import pytest

from taco.metrics import sanitize
from taco.tracking.mlflow_logger import MLflowLogger
from taco.tracking.store import (
    artifact_location_for,
    get_or_create_experiment,  # artifacts beside the store
)


def test_sanitize_class_names():
    assert sanitize("Plastic bag & wrapper") == "Plastic bag and wrapper"
    assert sanitize("Rope & strings") == "Rope and strings"
    assert sanitize("a/b (c)") == "a_b _c_"


def test_artifacts_live_next_to_the_sqlite_store(tmp_path):
    loc = artifact_location_for(f"sqlite:///{tmp_path}/mlflow.db")
    assert loc == (tmp_path / "mlartifacts").as_uri()
    assert artifact_location_for("http://127.0.0.1:5000") is None


def _status(uri, run_id):
    return mlflow.MlflowClient(uri).get_run(run_id)


def test_finished(mlflow_uri):
    logger = MLflowLogger(mlflow_uri, experiment_name="t")
    with logger.run(tags={"dataset": "x"}):
        logger.log_metrics({"m": 1.0}, step=1)
    run = _status(mlflow_uri, logger.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "x"
    assert run.data.metrics["m"] == 1.0
    assert mlflow.active_run() is None
    # the experiment the run created opens on its training runs in MLflow 3's UI
    experiment = mlflow.MlflowClient(mlflow_uri).get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_exception_marks_failed_with_message_and_traceback(mlflow_uri, tmp_path):
    logger = MLflowLogger(mlflow_uri, experiment_name="t")
    with pytest.raises(RuntimeError, match="boom"):
        with logger.run():
            raise RuntimeError("boom")
    run = _status(mlflow_uri, logger.run_id)
    assert run.info.status == "FAILED"
    assert "RuntimeError: boom" in run.data.tags["error"]
    client = mlflow.MlflowClient(mlflow_uri)
    text = tmp_path / "tb.txt"
    path = client.download_artifacts(logger.run_id, "error/traceback.txt", str(tmp_path))
    text = open(path).read()
    assert "boom" in text and "Traceback" in text
    assert mlflow.active_run() is None


def test_ctrl_c_marks_killed(mlflow_uri):
    logger = MLflowLogger(mlflow_uri, experiment_name="t")
    with pytest.raises(KeyboardInterrupt):
        with logger.run():
            raise KeyboardInterrupt
    assert _status(mlflow_uri, logger.run_id).info.status == "KILLED"


def test_a_signal_during_a_store_write_is_delivered_after_it():
    """SIGTERM in the middle of a write would leave SQLite locked and the run RUNNING: it is
    held until the write ends, then raised by the job's own handler."""
    import signal

    from taco.signals import held_interrupts

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt, match="signal"):
            with held_interrupts():
                signal.raise_signal(signal.SIGTERM)
                steps.append("write finished")
        assert steps == ["write finished"]
        assert signal.getsignal(signal.SIGTERM) is interrupt  # the job's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupt_that_lands_in_a_finalizer_is_not_lost():
    """Garbage collection runs `__del__` and weakref callbacks anywhere; a SIGTERM handled there
    would be printed and dropped (the job training on, its signals ignored): it is raised again
    in ordinary code, once."""
    import os
    import signal
    import time

    from taco.signals import Interrupted, sigterm_as_interrupt

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10_000))  # the handler runs here, inside the finalizer

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        with sigterm_as_interrupt():
            Finalized()  # collected at once
            time.sleep(5)  # interrupted long before this ends
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous
    signal.signal(signal.SIGINT, signal.default_int_handler)  # interrupt_once ignored it


def test_a_model_is_found_by_the_first_characters_of_its_run_id(mlflow_uri):
    from taco.errors import TacoError
    from taco.tracking.logged_model import model_uri

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = get_or_create_experiment(client, "refs")
    ids = [client.create_run(experiment).info.run_id for _ in range(40)]
    unique = next(i for i in ids if sum(j.startswith(i[:3]) for j in ids) == 1)
    assert model_uri(unique[:3], client) == f"runs:/{unique}/model"
    assert model_uri(unique[:3].upper(), client) == f"runs:/{unique}/model"
    assert model_uri("models:/litter/2", client) == "models:/litter/2"  # resolved when fetched
    shared = next(i[:1] for i in ids if sum(j.startswith(i[:1]) for j in ids) > 1)
    with pytest.raises(TacoError, match="starts several run ids"):
        model_uri(shared, client)
    with pytest.raises(TacoError, match="no run id starts with"):
        model_uri("zzzz", client)
    with pytest.raises(TacoError, match="not a model reference"):
        model_uri("a1; drop", client)


def test_registering_points_mlflow_at_the_store_for_the_call_and_back(tmp_path, monkeypatch):
    """MLflow's registry resolves `models:/<id>` through the process-wide URI: a stale one (left
    by an earlier run in this process) would register against another store."""
    import os

    from taco.tracking.logged_model import process_tracking_uri

    stale, mine, store = (f"sqlite:///{tmp_path}/{n}.db" for n in ("stale", "mine", "store"))
    mlflow.set_tracking_uri(stale)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mine)
    with process_tracking_uri(store):
        assert mlflow.get_tracking_uri() == store
    assert mlflow.get_tracking_uri() == stale and os.environ["MLFLOW_TRACKING_URI"] == mine
    mlflow.set_tracking_uri(None)  # no stale URI for the tests after this one


def test_logger_none_works_with_a_study_that_names_its_experiment(compose_cfg):
    from taco.config import build, resolved_config
    from taco.schema import check_config
    from taco.tracking.base import NullLogger

    cfg = compose_cfg(["logger=none", "experiment=compare_models_cv"])
    check_config(resolved_config(cfg))
    logger = build(cfg.logger)
    assert type(logger) is NullLogger and not logger.active


def test_the_data_digest_tells_splits_and_class_maps_apart(mlflow_uri):
    from taco.tracking.datasets import data_digest

    record = {
        "dataset": "synthetic",
        "source": "/data/annotations.json",
        "annotation_sha256": "ab" * 32,
        "class_names": ["Bottle", "Can"],
        "train": [1, 2, 3],
        "val": [4],
        "test": [5],
        "split_seed": 0,
    }
    assert data_digest(record) == data_digest(dict(record, split_seed=9))  # ids decide, not seed
    others = [
        dict(record, train=[1, 2, 5], test=[3]),
        dict(record, class_names=["Bottle", "Other"]),
        dict(record, annotation_sha256="cd" * 32),
    ]
    assert len({data_digest(r) for r in [record, *others]}) == 4

    logger = MLflowLogger(tracking_uri=mlflow_uri, experiment_name="data")
    with logger.run():
        logger.log_dataset(record)
    run = mlflow.MlflowClient(mlflow_uri).get_run(logger.run_id)
    (given,) = run.inputs.dataset_inputs
    assert (given.dataset.name, given.dataset.digest) == ("synthetic", data_digest(record))
    assert given.dataset.source == '{"uri": "/data/annotations.json"}'

import mlflow
import pytest

from taco.metrics import sanitize
from taco.tracking.mlflow_logger import MLflowLogger, artifact_location_for


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

    from taco.tracking.mlflow_logger import uninterrupted

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt, match="signal"):
            with uninterrupted():
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

    from taco.errors import Interrupted, sigterm_as_interrupt

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
    experiment = client.create_experiment("refs")
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


def test_a_win_inside_the_seed_spread_is_marked_within_noise():
    from taco.tracking.compare import Comparison

    table = Comparison(
        None, ["a", "b"], ["Bottle", "Can", "Cup"], {"Bottle": 9, "Can": 4, "Cup": 2}
    )
    table.runs = {"a": [1, 2, 3], "b": [1, 2, 3]}  # three seeds each
    for a, b in [(0.80, 0.40), (0.82, 0.42), (0.78, 0.38)]:  # Bottle: a far ahead
        table.add("Bottle", "a", a), table.add("Bottle", "b", b)
    for a, b in [(0.50, 0.30), (0.20, 0.45), (0.65, 0.40)]:  # Can: a ahead on average only
        table.add("Can", "a", a), table.add("Can", "b", b)
    for v in ("a", "b"):  # Cup: a tie
        for value in (0.1, 0.2, 0.3):
            table.add("Cup", v, value)
    assert not table.within_noise("Bottle") and table.cell("Bottle", "a").startswith("**")
    assert table.best("Can") == {"a"} and table.within_noise("Can")
    assert table.cell("Can", "a").endswith("≈") and "**" not in table.cell("Can", "a")
    assert table.best("Cup") == set() and not table.within_noise("Cup")
    text = table.markdown()
    assert "| classes won (alone) | | 1 | 0 |" in text
    assert "| best but within seed noise (≈) | | 1 | 0 |" in text


def test_a_fold_job_without_logged_predictions_is_named_with_what_to_do(mlflow_uri):
    from taco.errors import DataError
    from taco.tracking.pooled import pool_runs

    client = mlflow.MlflowClient(mlflow_uri)
    run = client.create_run(client.create_experiment("old"))
    client.set_terminated(run.info.run_id)
    with pytest.raises(DataError, match=f"run {run.info.run_id} has no predictions/test.npz"):
        pool_runs(client, [client.get_run(run.info.run_id)], "cnn")


def test_pooling_refuses_an_image_held_out_twice(mlflow_uri, tmp_path):
    import numpy as np

    from taco.errors import DataError
    from taco.tracking.pooled import pool_runs

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.create_experiment("twice")
    folder = tmp_path / "predictions"
    folder.mkdir()
    y = np.array([[1, 0], [0, 1]], np.uint8)
    np.savez(
        folder / "test.npz",
        image_ids=np.array([3, 5]),
        y_true=y,
        scores=np.array([[0.9, 0.1], [0.2, 0.7]]),
        thresholds=np.array([0.5, 0.5]),
        class_names=np.array(["Bottle", "Can"]),
    )
    runs = []
    for _ in range(2):  # two seeds of one fold
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "predictions")
        runs.append(client.get_run(run.info.run_id))
    pooled = pool_runs(client, runs[:1], "cnn")
    assert pooled.image_ids.tolist() == [3, 5] and pooled.decided.tolist() == y.tolist()
    with pytest.raises(DataError, match="held out by more than one job"):
        pool_runs(client, runs, "cnn")


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


def test_a_single_model_cross_validation_compares_nothing():
    """One model: its pooled F1 with intervals, no "significantly best" column, no claim."""
    import numpy as np

    from taco.resampling import Interval
    from taco.tracking.pooled import CrossValidation, Settings, markdown, report_body

    interval = Interval(
        np.array([0.5, 0.2]), np.array([0.4, 0.1]), np.array([0.6, 0.3]), 0.35, 0.3, 0.4
    )
    cv = CrossValidation(
        variants=["cnn"], classes=["Bottle", "Can"], support={"Bottle": 30, "Can": 5}, images=60,
        folds=2, settings=Settings(), intervals={"cnn": interval}, index={"Bottle": 0, "Can": 1},
    )  # fmt: skip
    table = markdown(cv)
    assert "significantly best" not in table and "no detectable difference" not in table
    assert "| Bottle | 30 | 0.50 [0.40, 0.60] |" in table
    assert "One model (cnn): nothing to compare it with" in report_body(cv)


def test_logger_none_works_with_a_study_that_names_its_experiment(compose_cfg):
    from taco.config import build, resolved_config
    from taco.schema import check_config
    from taco.tracking.mlflow_logger import NullLogger

    cfg = compose_cfg(["logger=none", "experiment=compare_models_cv"])
    check_config(resolved_config(cfg))
    logger = build(cfg.logger)
    assert type(logger) is NullLogger and not logger.active


def _fabricated_cv(macro_p: list[float], permutations: int = 2000, classes: int = 2):
    """Three models with known F1 and macro p-values per pair (a > b > c)."""
    import numpy as np

    from taco.resampling import Interval, PairedTest
    from taco.tracking.pooled import CrossValidation, Settings

    names = [f"class{i}" for i in range(classes)]
    macro = {"a": 0.5, "b": 0.4, "c": 0.3}
    intervals = {
        v: Interval(np.full(classes, m), np.full(classes, m - 0.1), np.full(classes, m + 0.1),
                    m, m - 0.1, m + 0.1)
        for v, m in macro.items()
    }  # fmt: skip
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    tests = {
        pair: PairedTest(np.full(classes, 0.1), np.full(classes, 0.5), np.full(classes, 0.9),
                         macro[pair[0]] - macro[pair[1]], p, -0.1, 0.2)
        for pair, p in zip(pairs, macro_p, strict=True)
    }  # fmt: skip
    cv = CrossValidation(
        variants=list(macro), classes=names, support={n: 10 for n in names}, images=50, folds=5,
        settings=Settings(permutations=permutations), intervals=intervals, tests=tests,
        index={n: i for i, n in enumerate(names)},
    )  # fmt: skip
    from taco.resampling import holm

    cv.macro_p_holm = dict(zip(tests, holm(np.array(macro_p)).tolist(), strict=True))
    return cv


def test_the_macro_winner_is_decided_with_holm_across_the_pairs():
    from taco.tracking.pooled import pairs_markdown

    # raw p 0.03 and 0.02 would make "a" best; Holm over 3 pairs: 0.06 and 0.06 -> no winner
    cv = _fabricated_cv([0.03, 0.02, 0.5])
    assert cv.winner("macro F1") is None
    assert "| p (Holm, 3 pairs) |" in pairs_markdown(cv)
    assert "| 0.0300 | 0.0600 |" in pairs_markdown(cv)
    assert _fabricated_cv([0.01, 0.001, 0.5]).winner("macro F1") == "a"  # 0.02, 0.003


def test_too_few_permutations_for_the_family_is_said():
    # the case: 28 classes, 500 permutations -> the smallest Holm p is 28 / 501 = 0.056
    cv = _fabricated_cv([0.5, 0.5, 0.5], permutations=500, classes=28)
    (warning,) = cv.floor_warnings()
    assert "with 28 classes tested and --permutations 500" in warning
    assert "0.056 > alpha 0.05" in warning and "--permutations 559 or more" in warning
    assert _fabricated_cv([0.5, 0.5, 0.5], permutations=2000, classes=28).floor_warnings() == []

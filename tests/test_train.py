"""End to end: the real CLI, a real Hydra run, a real Keras model, a real MLflow store."""

import csv
import json
import os
import subprocess
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from sklearn.metrics import f1_score

from taco.cli.evaluate import evaluate_model
from taco.cli.predict import main as predict_main
from taco.errors import DataError
from taco.tracking.datasets import data_digest
from taco.training.job import train
from tests import tiny
from tests.helpers import script, sigterm_once_training


def _runs(uri):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("taco")
    return client, client.search_runs([exp.experiment_id]) if exp else []


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, tiny_data, empty_store):
    """One tiny run of the real `taco-train` in a fresh process, with every default callback
    (the analysis figures included), read back by the tests below, each of one behaviour."""
    folder = tmp_path_factory.mktemp("default_run")
    uri = f"sqlite:///{folder}/mlflow.db"  # a new store: MLflow's table-creation lines quiet
    exe = script("taco-train")
    overrides = [f"paths.data_dir={tiny_data}", *tiny.SETTINGS]  # every default callback on
    cmd = [exe, *overrides, f"hydra.run.dir={folder}/run", "seed=3"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    split = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/split.json")
    return SimpleNamespace(
        folder=folder, uri=uri, out=out, client=client, run=run, split=split, overrides=overrides
    )


@pytest.mark.subprocess
def test_the_console_shows_the_per_class_table_and_no_library_noise(default_run):
    out = default_run.out
    assert "| class" in out.stdout and "macro F1" in out.stdout  # the per-class table
    noise = ("absl::InitializeLog", "oneDNN custom operations", "cuInit", "cuda drivers")
    assert not [n for n in noise if n in out.stderr]  # TensorFlow's start-up lines, filtered
    chatter = (  # MLflow's own, into a new store: only taco's lines belong on the console
        "Creating initial MLflow database tables", "Updating database tables",
        "Validating input example", "Downloading artifacts", "alembic",
    )  # fmt: skip
    assert not [c for c in chatter if c in out.stdout + out.stderr]


@pytest.mark.subprocess
def test_a_run_logs_per_class_f1_its_history_tags_and_params(default_run):
    run, client = default_run.run, default_run.client
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert 0.0 <= m["test/f1_macro"] <= 1.0
    assert m["test/f1_macro_classes"] >= 1
    assert {"test/f1_micro", "test/f1_samples", "val/f1_macro"} <= set(m)
    assert "test/floor/f1_macro_all" in m
    per_class = [k for k in m if k.startswith("test/f1/")]
    assert per_class and len(per_class) == m["test/f1_macro_classes"]
    assert any(k.startswith("test/support/Plastic bag and wrapper") for k in m)
    history = client.get_metric_history(run.info.run_id, "val/f1_macro")
    assert [h.step for h in history] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
    tags = run.data.tags
    assert tags["dataset"] == "synthetic" and tags["model"] == "cnn" and "git_commit" in tags
    assert tags["cpu"].endswith(" cores") and "tensorflow " in tags["versions"] and tags["gpu"]
    assert run.data.params["seed"] == "3" and run.data.params["trainer.max_epochs"] == "2"


@pytest.mark.subprocess
def test_a_run_logs_its_split_thresholds_config_and_why_a_class_fails(default_run):
    run, client = default_run.run, default_run.client
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"split.json", "thresholds.json", "per_class_test.md", "plots", ".hydra"} <= artifacts
    assert {"config"} <= artifacts
    # what each threshold rests on, and which rest on fewer validation positives than the minimum
    support = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/threshold_support.json")
    assert support["min_positives"] == 5 and support["below_minimum"] == [
        c for c, n in support["validation_positives"].items() if n < 5
    ]
    # why a class fails: curves, galleries, what is predicted instead, where the model looks
    analysis = {a.path for a in client.list_artifacts(run.info.run_id, "analysis")}
    assert {
        "analysis/per_class_curves.png",
        "analysis/missed_instead.png",
        "analysis/errors.json",
        "analysis/pointing_game.md",
        "analysis/galleries",
    } <= analysis
    galleries = client.list_artifacts(run.info.run_id, "analysis/galleries")
    assert galleries and all(a.path.endswith(".png") and a.file_size > 1000 for a in galleries)
    m = run.data.metrics
    assert m["test/pointing/pairs"] >= 1
    assert all(0 <= m[f"test/pointing/{k}"] <= 1 for k in ("model", "centre", "random"))
    hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
    assert ".hydra/config.yaml" in hydra_files and ".hydra/overrides.yaml" in hydra_files
    assert (default_run.folder / "run" / ".hydra" / "config.yaml").exists()
    split = default_run.split
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(48))


@pytest.mark.subprocess
def test_a_run_names_its_data_as_a_dataset_input(default_run):
    """The runs table's Dataset column: the data's digest, source, class map and sizes."""
    split = default_run.split
    (given,) = default_run.run.inputs.dataset_inputs
    dataset = given.dataset
    assert dataset.name == "synthetic" and dataset.digest == data_digest(split)
    assert dataset.source_type == "local" and "annotations.json" in dataset.source
    columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
    assert columns == split["class_names"]  # the class map
    profile = json.loads(dataset.profile)
    assert profile["images"] == {p: len(split[p]) for p in ("train", "val", "test")}
    assert {t.key: t.value for t in given.tags}["mlflow.data.context"] == "training"


@pytest.mark.subprocess
def test_every_test_metric_recomputes_from_the_logged_predictions(default_run):
    """scikit-learn, from the logged scores and thresholds, gives the logged F1."""
    run, m = default_run.run, default_run.run.data.metrics
    path = mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/predictions/test.npz")
    logged = np.load(path)
    assert logged["image_ids"].tolist() == default_run.split["test"]
    decided = logged["scores"] >= logged["thresholds"]
    present = np.flatnonzero(logged["y_true"].sum(0) > 0)
    macro = f1_score(logged["y_true"], decided, average="macro", labels=present, zero_division=0)
    assert macro == pytest.approx(m["test/f1_macro"], abs=1e-6)
    assert f1_score(logged["y_true"], decided, average="micro") == pytest.approx(m["test/f1_micro"])


@pytest.mark.subprocess
def test_the_logged_model_labels_a_folder_found_by_a_short_run_id(
    default_run, tiny_data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_run.uri)
    support = mlflow.artifacts.load_dict(
        f"{default_run.run.info.artifact_uri}/threshold_support.json"
    )
    rare = support["below_minimum"]
    images = tiny_data / "synthetic" / "batch_1"
    short = default_run.run.info.run_id[:8]
    capsys.readouterr()
    argv = ["--model", short, str(images), "--output", str(tmp_path / "p.csv"), "--cpu-isa", "none"]
    assert predict_main(argv) == 0  # in this process: TensorFlow is loaded, so no cap to set
    printed = capsys.readouterr()
    assert len(printed.out.strip().splitlines()) == 48
    assert bool(rare) == ("were tuned on fewer validation positives" in printed.err)
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 48 and list(rows[0])[:3] == ["file", "labels", "score/Aluminium foil"]
    for row in rows:  # the decisions beside the scores, as the printed labels say; a class
        # whose threshold rests on too few validation positives marked '?'
        decided = [k[len("decision/") :] for k, v in row.items() if k.startswith("decision/")]
        on = [c for c in decided if row[f"decision/{c}"] == "True"]
        assert row["labels"] == "; ".join(f"{c}?" if c in rare else c for c in on)
    omitted = tmp_path / "omit.csv"
    argv[4] = str(omitted)
    assert predict_main([*argv, "--rare-thresholds", "omit"]) == 0
    for row in csv.DictReader(omitted.open()):
        assert "?" not in row["labels"] and not set(row["labels"].split("; ")) & set(rare)


@pytest.mark.subprocess
def test_taco_eval_reproduces_the_test_scores_from_a_run_or_a_model_folder(
    default_run, compose_cfg, monkeypatch
):
    """The same model, split and thresholds: a new run with the same test macro F1."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_run.uri)
    run, overrides = default_run.run, default_run.overrides
    expected = run.data.metrics["test/f1_macro"]
    cfg = compose_cfg([*overrides, "seed=3", f"run_id={run.info.run_id}"], config_name="eval")
    assert evaluate_model(cfg) == pytest.approx(expected)
    client = default_run.client
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    evaluation = [r for r in runs if r.data.tags.get("source_run_id") == run.info.run_id]
    assert len(evaluation) == 1 and evaluation[0].info.status == "FINISHED"
    assert evaluation[0].data.metrics["test/f1_macro"] == pytest.approx(expected)
    # a downloaded model folder
    folder = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model")
    cfg = compose_cfg(
        [*overrides, "seed=3", "logger=none", f"model_dir={folder}"], config_name="eval"
    )
    assert evaluate_model(cfg) == pytest.approx(expected)


def test_missing_dataset_is_refused_before_a_run_opens(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    cfg = compose_cfg(["dataset=taco", *tiny_overrides(tmp_path, own_data=True)[:2]])
    with pytest.raises(DataError) as err:
        train(cfg)
    assert str(tmp_path / "data" / "taco") in str(err.value)
    assert "Download TACO" in str(err.value)
    _, runs = _runs(mlflow_uri)
    assert runs == []  # nothing to lose, nothing left RUNNING
    assert mlflow.active_run() is None


def test_cli_error_is_one_readable_line(tmp_path, mlflow_uri, command):
    out = command(
        "taco-train", "dataset=taco", f"paths.data_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run"
    )
    assert out.returncode == 1
    assert "taco-train: error: dataset folder not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_augmentation_argument_is_refused_before_training(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    cfg = compose_cfg(
        [*tiny_overrides(tmp_path, own_data=True), "+augmentation.transforms.0.wobble=3"]
    )
    with pytest.raises(Exception, match="wobble"):
        train(cfg)
    _, runs = _runs(mlflow_uri)
    assert runs == []  # refused while the job was built: before any run or data work
    assert not (tmp_path / "data" / "synthetic").exists()


@pytest.mark.backend
def test_same_config_and_seed_give_identical_per_class_f1(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    """... whether 0 or 2 worker processes augment the batches (heavy augmentation)."""
    overrides = [*tiny_overrides(tmp_path), "seed=11", "augmentation=heavy"]
    train(compose_cfg([*overrides, "dataset.num_workers=0"]))
    train(compose_cfg([*overrides, "dataset.num_workers=2"]))
    client, runs = _runs(mlflow_uri)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    first, second = (
        {k: v for k, v in r.data.metrics.items() if k.startswith("test/")} for r in runs
    )
    assert first == second and any(k.startswith("test/f1/") for k in first)


@pytest.mark.subprocess
def test_sigterm_saves_a_checkpoint_marks_the_run_killed_and_resumes(
    tmp_path, tiny_overrides, mlflow_uri, compose_cfg
):
    exe = script("taco-train")
    overrides = [
        o for o in tiny_overrides(tmp_path) if not o.startswith(("paths.output", "trainer"))
    ]
    cmd = [exe, *overrides, "trainer.max_epochs=500", f"hydra.run.dir={tmp_path}/run"]
    assert sigterm_once_training(cmd) == 143  # 128 + SIGTERM, as a shell reports it
    _, runs = _runs(mlflow_uri)
    assert [r.info.status for r in runs] == ["KILLED"]
    assert "terminated by SIGTERM" in runs[0].data.tags["error"]
    assert "trainer.max_epochs=500" in runs[0].data.tags["hydra_overrides"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert runs[0].data.tags["checkpoint"] == str(ckpt) and ckpt.is_file()

    # the same job, told to stop sooner, continues the killed run from its checkpoint (the
    # template's way: the job function on the composed config, no second process)
    resume = [*overrides, "trainer.max_epochs=3", f"paths.output_dir={tmp_path}/run"]
    train(compose_cfg([*resume, "ckpt_path=last"]))
    _, runs = _runs(mlflow_uri)
    assert [r.info.status for r in runs] == ["FINISHED"] and "error" not in runs[0].data.tags
    assert "test/f1_macro" in runs[0].data.metrics


def test_eval_needs_a_run_or_a_model(tmp_path, mlflow_uri):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from taco.cli.evaluate import evaluate_model
    from taco.config import CONF_DIR
    from taco.errors import ConfigError

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", [f"paths.data_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    with pytest.raises(ConfigError, match="exactly one of run_id"):
        evaluate_model(cfg)

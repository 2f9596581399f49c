"""`taco.export`: a trained Keras model to ONNX and LiteRT, run by each runtime alone, scores
matching the Keras model's."""

from __future__ import annotations

import numpy as np
import pytest

from taco.errors import TacoError
from taco.training.job import train


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """The project's CNN (32 px, 5 classes, its preprocessing inside) saved as a run saves it."""
    import keras

    from taco.models.cnn import build_cnn
    from taco.models.keras_classifier import KerasClassifier

    keras.utils.set_random_seed(0)
    classifier = KerasClassifier(build=lambda **kw: build_cnn(filters=[8, 16], **kw))
    classifier.setup(5, 32)
    folder = tmp_path_factory.mktemp("model")
    meta = {"class_names": list("abcde"), "image_size": 32, "thresholds": [0.5] * 5}
    return classifier.save(folder, meta)


@pytest.fixture(scope="module")
def keras_model(model_folder):
    """The saved model loaded back as `taco-predict` loads it."""
    import keras

    return keras.saving.load_model(model_folder / "model.keras", compile=False)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
@pytest.mark.parametrize(("quantize", "tolerance"), [("none", 1e-4), ("float16", 2e-2)])
def test_an_export_scores_as_the_keras_model_does(keras_model, tmp_path, fmt, quantize, tolerance):
    from taco.export.convert import FORMATS, export_keras
    from taco.export.runtime import ExportedModel

    path = export_keras(keras_model, tmp_path / f"m{FORMATS[fmt]}", fmt, quantize)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    expected = keras_model.predict(images, verbose=0)
    exported = ExportedModel(path, threads=1)
    got = exported.predict(images)
    assert got.shape == (6, 5)
    assert np.abs(got - expected).max() < tolerance
    assert np.abs(exported.predict(images[:1]) - expected[:1]).max() < tolerance  # batch 1


def test_a_truncated_or_foreign_file_is_one_line(keras_model, tmp_path):
    from taco.export.convert import export_keras
    from taco.export.runtime import ExportedModel

    path = export_keras(keras_model, tmp_path / "m.onnx", "onnx")
    (tmp_path / "cut.onnx").write_bytes(path.read_bytes()[:200])
    (tmp_path / "foreign.tflite").write_text("not a flatbuffer")
    for name in ("cut.onnx", "foreign.tflite"):
        with pytest.raises(TacoError) as error:
            ExportedModel(tmp_path / name)
        message = str(error.value)
        assert message.startswith(f"{tmp_path / name}: its runtime cannot load it")
        assert "\n" not in message


def test_predict_labels_a_folder_with_the_onnx_runtime_alone(
    model_folder, keras_model, tmp_path, command
):
    import csv
    import json
    import subprocess
    import sys

    from PIL import Image

    from taco.export.convert import export_keras
    from taco.export.sidecar import write_sidecar

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    info = json.loads((model_folder / "taco_model.json").read_text())
    path = export_keras(keras_model, tmp_path / "cnn.onnx", "onnx")
    write_sidecar(path, info, "onnx", "none", {"model_dir": str(model_folder)})
    out = {}
    for runtime, model in (("keras", ["--model-dir", str(model_folder)]), ("onnx", [])):
        csv_path = tmp_path / f"{runtime}.csv"
        if runtime == "keras":
            proc = command("taco-predict", *model, str(images), "--output", str(csv_path))
        else:  # a fresh process, its imports timed: neither Keras nor TensorFlow loads
            exe = [sys.executable, "-X", "importtime", "-m", "taco.cli.predict"]
            args = ["--runtime", "onnx", "--model", str(path), str(images)]
            proc = subprocess.run(
                [*exe, *args, "--output", str(csv_path)], capture_output=True, text=True
            )
            imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
            assert not {"keras", "tensorflow", "jax", "mlflow"} & imported
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[runtime] = list(csv.DictReader(csv_path.open()))
    for keras_row, onnx_row in zip(out["keras"], out["onnx"], strict=True):
        assert keras_row["labels"] == onnx_row["labels"]
        for name in "abcde":
            key = f"score/{name}"
            assert abs(float(keras_row[key]) - float(onnx_row[key])) < 1e-4


def test_a_file_whose_size_disagrees_with_its_sidecar_is_refused(keras_model, tmp_path):
    from taco.export.convert import export_keras
    from taco.export.runtime import load_exported
    from taco.export.sidecar import write_sidecar

    path = export_keras(keras_model, tmp_path / "m.tflite", "litert")
    info = {"class_names": list("abcde"), "thresholds": [0.5] * 5, "image_size": 64}
    write_sidecar(path, info, "litert", "none", {})
    with pytest.raises(TacoError, match="the file takes 32 x 32 images but its sidecar says 64"):
        load_exported(path)


def test_export_of_the_last_run_writes_a_file_and_its_sidecar(
    tmp_path, tiny_overrides, mlflow_uri, command, compose_cfg
):
    import json
    from pathlib import Path

    import mlflow

    from taco.export.runtime import ExportedModel

    train(compose_cfg(tiny_overrides(tmp_path)))  # the job function, as the template trains
    client = mlflow.MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    out = tmp_path / "export"
    proc = command("taco-export", "--model", "last", "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| macro F1 |" in proc.stdout and (out / "check.md").is_file()  # checked on test
    assert "batch 1 on 1 thread: p50 " in (out / "cost.txt").read_text()  # size and latency
    assert "| +0.000 |" in proc.stdout.split("| macro F1 |")[1]
    record = json.loads((out / "model.onnx.json").read_text())
    assert record["source"]["run_id"] == run.info.run_id
    assert record["source"]["git_commit"] == run.data.tags["git_commit"]
    assert record["format"] == "onnx" and record["input"]["dtype"] == "uint8"
    assert len(record["class_names"]) == len(record["thresholds"])
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (50, 40), (120, 30, 200)).save(images / "a.png")
    # int8: calibrated on the run's training images, thresholds re-tuned on validation
    int8 = ["--format", "litert", "--quantize", "int8", "--out", str(tmp_path / "int8")]
    int8 = command("taco-export", "--model", "last", *int8)
    assert int8.returncode == 0, int8.stderr[-2000:]
    assert "export F1, thresholds re-tuned on validation" in int8.stdout
    # logged to the source run, and (--register) a model version carrying the check
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "export/onnx-none")}
    assert {"export/onnx-none/model.onnx", "export/onnx-none/check.md"} <= logged
    registered = ["--format", "onnx", "--register", "bin", "--out", str(tmp_path / "r")]
    assert command("taco-export", "--model", "last", *registered).returncode == 0
    version = client.get_model_version("bin", "1")
    assert version.run_id == run.info.run_id and "| macro F1 |" in version.description
    # an MLflow model of the onnx flavour: mlflow.onnx and pyfunc users load the version
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=version.source, tracking_uri=mlflow_uri, dst_path=str(tmp_path / "got")
    )
    import mlflow.onnx

    assert mlflow.onnx.load_model(local).graph.node  # the ONNX graph itself
    size = record["image_size"]
    pixels = np.full((2, size, size, 3), 128, np.uint8)
    scores = mlflow.pyfunc.load_model(local).predict(pixels)
    expected = ExportedModel(out / "model.onnx").predict(pixels)
    assert np.abs(np.asarray(next(iter(scores.values()))) - expected).max() < 1e-5
    assert (Path(local) / "model.onnx.json").is_file()  # the sidecar travels with it
    labelled = command(
        "taco-predict", "--runtime", "onnx", "--model", str(out / "model.onnx"), str(images)
    )
    assert labelled.returncode == 0 and labelled.stdout.startswith(str(images / "a.png"))
    # a registered version of the trained model exports as its run does
    (logged,) = [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs]
    client.create_registered_model("litter")
    client.create_model_version("litter", f"models:/{logged}", run.info.run_id, model_id=logged)
    given = ["--format", "onnx", "--no-log", "--out", str(tmp_path / "v1")]
    assert command("taco-export", "--model", "models:/litter/1", *given).returncode == 0
    source = json.loads((tmp_path / "v1" / "model.onnx.json").read_text())["source"]
    assert source["model_uri"] == "models:/litter/1" and source["run_id"] == run.info.run_id


def test_int8_without_a_run_to_draw_from_is_refused_in_one_line(model_folder, command):
    given = ["--model-dir", str(model_folder), "--format", "onnx", "--quantize", "int8"]
    proc = command("taco-export", *given)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "quantize=int8 needs representative images to calibrate on" in line


@pytest.fixture(scope="module")
def forest_folder(tmp_path_factory):
    """A forest on a random-init VGG16's features (32 px, 5 classes: "b" positive on every
    training image, "c" on none), saved as a run saves it."""
    import keras
    from sklearn.ensemble import RandomForestClassifier

    from taco.models.forest import ForestClassifier

    keras.utils.set_random_seed(0)
    classifier = ForestClassifier(backbone="VGG16", weights=None, n_jobs=1)
    classifier.setup(5, 32, np.zeros((1, 5)))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    features = classifier._extractor().predict(images, verbose=0)
    labels = (rng.random((40, 5)) < 0.4).astype(np.int64)
    labels[:, 1], labels[:, 2] = 1, 0
    classifier.forest = RandomForestClassifier(20, random_state=0).fit(features, labels)
    meta = {"class_names": list("abcde"), "image_size": 32, "thresholds": [0.5] * 5}
    return classifier.save(tmp_path_factory.mktemp("forest"), meta)


def test_a_forest_exports_to_onnx_as_one_graph_scoring_as_taco_does(forest_folder, tmp_path):
    import json

    import onnx

    from taco.export.convert import export_keras
    from taco.export.runtime import ExportedModel
    from taco.models.forest import ForestClassifier

    info = json.loads((forest_folder / "taco_model.json").read_text())
    graph = ForestClassifier.load_exportable(forest_folder, info)
    path = export_keras(graph, tmp_path / "m.onnx", "onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and any(op.startswith("TreeEnsemble") for op in ops)  # one file
    images = np.random.default_rng(1).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    expected = ForestClassifier.load_predictor(forest_folder, info)(images)
    got = ExportedModel(path, threads=1).predict(images)
    assert got.shape == (12, 5) and np.abs(got - expected).max() < 1e-4
    assert (got[:, 1] == 1).all() and (got[:, 2] == 0).all()  # labels constant in training


def test_a_forest_to_litert_and_a_family_without_a_graph_are_refused_in_one_line(
    forest_folder, tmp_path, command
):
    out = tmp_path / "litert"
    given = ["--model-dir", str(forest_folder), "--format", "litert", "--out", str(out)]
    proc = command("taco-export", *given)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert "a forest model exports to ONNX only (--format onnx): LiteRT has no" in line
    assert not out.exists()  # refused: nothing left behind
    from tests.toy_family import PooledLogistic  # the README's recipe: it gives no graph

    with pytest.raises(TacoError, match="a pooled_logistic model cannot be exported: its fam"):
        PooledLogistic.load_exportable(tmp_path, {"kind": "pooled_logistic"})


def test_the_check_names_a_class_whose_f1_moved_and_a_float32_score_that_did():
    from taco.export.check import check_export

    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    keras = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6], [0.1, 0.2]])
    same = check_export(keras, keras + 1e-5, y, np.array([0.5, 0.5]), ["Can", "Lid"], "none")
    assert same.failures() == [] and same.max_score_diff < 1e-4
    moved = keras.copy()
    moved[1, 1] = 0.4  # Lid's true positive lost: F1 1.0 -> 0.667
    check = check_export(keras, moved, y, np.array([0.5, 0.5]), ["Can", "Lid"], "float16")
    assert check.failures() == ["class Lid (F1 1.000 -> 0.667) moved by more than 0.01"]
    assert "| Lid | 2 | 1.000 | 0.667 | -0.333 |" in check.markdown()
    as_float32 = check_export(keras, moved, y, np.array([0.5, 0.5]), ["Can", "Lid"], "none")
    assert any("a score moved by 3.00e-01" in f for f in as_float32.failures())


@pytest.mark.slow  # a VGG16 and an Xception (60 and 85 MB files): `make test-all`
@pytest.mark.parametrize(("name", "size"), [("vgg16", 32), ("xception", 72)])
def test_the_transfer_heads_export_to_both_formats(compose_cfg, tmp_path, name, size):
    from taco.config import build
    from taco.export.convert import FORMATS, export_keras
    from taco.export.runtime import ExportedModel

    classifier = build(compose_cfg([f"model={name}", "model.weights=null"]).model.classifier)
    classifier.setup(5, size)
    images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    expected = classifier.model.predict(images, verbose=0)
    for fmt, suffix in FORMATS.items():
        path = export_keras(classifier.model, tmp_path / f"m{suffix}", fmt)
        assert np.abs(ExportedModel(path).predict(images) - expected).max() < 1e-4

"""Every model family through the same Trainer, metrics and MLflow logging, on tiny images."""

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from taco.config import build
from taco.errors import ConfigError
from taco.training.job import train, trainer_node

FAMILIES = {
    "vgg16": [
        "model=vgg16",
        "model.weights=null",
        "model.image_size=32",
        "model.classifier.head_epochs=1",
        "model.classifier.build.dense_units=16",
    ],
    "xception": [
        "model=xception",
        "model.weights=null",
        "model.image_size=71",
        "model.classifier.head_epochs=1",
        "model.classifier.build.dense_units=16",
    ],
    "vgg16_rf": [
        "model=vgg16_rf",
        "model.weights=null",
        "model.image_size=32",
        "model.classifier.n_estimators=20",
    ],
    "xception_rf": [
        "model=xception_rf",
        "model.weights=null",
        "model.image_size=71",
        "model.classifier.n_estimators=20",
    ],
}


@pytest.mark.parametrize(
    "family",
    [
        pytest.param("cnn", marks=pytest.mark.backend),
        pytest.param("vgg16", marks=pytest.mark.backend),
        pytest.param("xception", marks=pytest.mark.slow),  # 71 px: `make test-all`
        "vgg16_rf",
        pytest.param("xception_rf", marks=pytest.mark.slow),
        "toy",  # the README's recipe (tests/toy_family.py)
    ],
)
def test_every_family_keeps_the_classifier_contract(family, compose_cfg, tmp_path):
    from taco.training.contract import check_classifier
    from tests.toy_family import PooledLogistic

    if family == "toy":
        check_classifier(PooledLogistic, tmp_path)
        return
    given = ["model.classifier.build.filters=[8,16]", "model.classifier.build.dense_units=16"]
    cfg = compose_cfg([f"paths.data_dir={tmp_path}/data", *(FAMILIES.get(family) or given)])
    check_classifier(lambda: build(cfg.model.classifier), tmp_path, cfg.model.image_size)


def _tiny(tiny_overrides, tmp_path, extra):
    keep = [o for o in tiny_overrides(tmp_path) if not o.startswith(("model.", "trainer."))]
    return [*keep, "trainer.max_epochs=2", *extra]


@pytest.mark.parametrize(
    "family",
    [
        pytest.param("vgg16", marks=pytest.mark.backend),  # the transfer path, on both backends
        # the same paths at Xception's 71 px minimum: 18 s and 12 s, `make test-all`
        pytest.param("xception", marks=pytest.mark.slow),
        "vgg16_rf",  # backbone features + forest, at 32 px
        pytest.param("xception_rf", marks=pytest.mark.slow),
    ],
)
def test_family_trains_and_logs_per_class_f1(
    family, compose_cfg, tmp_path, tiny_overrides, mlflow_uri, caplog
):
    cfg = compose_cfg(_tiny(tiny_overrides, tmp_path, FAMILIES[family]))
    with caplog.at_level("INFO", logger="taco"):
        value = train(cfg)
    assert 0.0 <= value <= 1.0
    client = mlflow.MlflowClient(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("taco").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["model"] == family
    assert any(k.startswith("test/f1/") for k in run.data.metrics)
    history = [m.step for m in client.get_metric_history(run.info.run_id, "val/f1_macro")]
    assert history == ([1] if family.endswith("_rf") else [1, 2])  # one axis over both stages
    _check_pyfunc(run.info.run_id, family)
    if family.endswith("_rf"):  # a single pass, reported as one, without a loss it has not
        assert "trainer.max_epochs=2 does not apply" in caplog.text
        assert "fitted in one pass" in caplog.text and "loss nan" not in caplog.text


def _check_pyfunc(run_id: str, family: str) -> None:
    """The run's model, as MLflow loads it: a pyfunc whose answer is labels, scores, decisions."""
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model.metadata.metadata["taco"]["model"] == family
    (spec,) = model.metadata.get_input_schema().inputs
    size = int(next(o for o in FAMILIES[family] if o.startswith("model.image_size=")).split("=")[1])
    assert spec.type == np.dtype(np.uint8) and spec.shape == (-1, size, size, 3)
    example = model.input_example
    assert example.shape == (1, size, size, 3) and example.dtype == np.uint8
    images = np.concatenate([example, np.zeros_like(example), np.full_like(example, 255)])
    frame = model.predict(images)
    assert len(frame) == 3 and frame.columns[0] == "labels"
    scores = frame.filter(like="score/").to_numpy()
    assert scores.shape[1] == (frame.shape[1] - 1) // 2 and ((0 <= scores) & (scores <= 1)).all()
    assert list(frame.columns) == [c.name for c in model.metadata.get_output_schema().inputs]
    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
    files = {f.name for f in folder.rglob("*")}
    assert {"MLmodel", "taco_model.json"} <= files
    assert ("forest" in files) if family.endswith("_rf") else ("model.keras" in files)


def _fitted(compose_cfg, tiny_overrides, tmp_path, extra):
    cfg = compose_cfg(_tiny(tiny_overrides, tmp_path, extra))
    dm, trainer, classifier = (
        build(cfg.dataset),
        build(trainer_node(cfg.trainer)),
        build(cfg.model.classifier),
    )
    trainer.fit(classifier, dm)
    trainer.validate(classifier, dm)
    return dm, trainer, classifier


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            ["model.image_size=32", "model.classifier.build.filters=[8,16]"],
            marks=pytest.mark.backend,
        ),
        [
            "model=vgg16_rf",
            "model.weights=null",
            "model.image_size=32",
            "model.classifier.n_estimators=10",
        ],
    ],
    ids=["cnn", "vgg16_rf"],
)
def test_saved_model_loads_back_and_predicts_the_same(compose_cfg, tmp_path, tiny_overrides, extra):
    from taco.models.registry import load_model

    dm, trainer, classifier = _fitted(compose_cfg, tiny_overrides, tmp_path, extra)
    test = dm.batches("test")
    expected = classifier.predict_scores(test)
    meta = {
        "class_names": dm.class_names,
        "thresholds": classifier.thresholds.tolist(),
        "image_size": dm.image_size,
        "resize": "squash",
    }
    loaded = load_model(classifier.save(tmp_path / "model", meta))
    images = test.images().astype(np.float32)
    np.testing.assert_allclose(loaded.predict(images), expected, rtol=1e-5, atol=1e-6)
    assert loaded.class_names == dm.class_names


def test_forest_features_are_extracted_once(compose_cfg, tmp_path, tiny_overrides):
    def own_data(path):  # a cache of its own, to see what is written
        return tiny_overrides(path, own_data=True)

    extra = [
        "model=vgg16_rf",
        "model.weights=null",
        "model.image_size=32",
        "model.classifier.n_estimators=5",
    ]
    _fitted(compose_cfg, own_data, tmp_path, extra)
    files = list((tmp_path / "data" / "cache" / "features").glob("*.npy"))
    assert len(files) == 1 and "VGG16-None-seed42-32px" in files[0].name
    written = files[0].stat().st_mtime_ns
    _fitted(compose_cfg, own_data, tmp_path, [*extra, "model.classifier.n_estimators=7"])
    assert list((tmp_path / "data" / "cache" / "features").glob("*.npy")) == files
    assert files[0].stat().st_mtime_ns == written  # reused, not computed again


def test_forest_scores_with_labels_constant_in_training():
    from sklearn.ensemble import RandomForestClassifier

    from taco.models.forest import forest_scores

    rng = np.random.default_rng(0)
    x = rng.random((30, 4))
    y = np.stack([x[:, 0] > 0.5, np.zeros(30), np.ones(30)], 1).astype(int)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    scores = forest_scores(forest, x, 3)
    assert scores.shape == (30, 3)
    assert np.all(scores[:, 1] == 0) and np.all(scores[:, 2] == 1)
    assert scores[:, 0][y[:, 0] == 1].mean() > scores[:, 0][y[:, 0] == 0].mean()


def test_backbone_checks_at_config_time(tmp_path, monkeypatch):
    from taco.models.backbones import check_backbone

    with pytest.raises(ConfigError, match="not a keras.applications model"):
        check_backbone("VGG17", 64)
    with pytest.raises(ConfigError, match="needs at least 71x71"):
        check_backbone("Xception", 64)
    check_backbone("ResNet50", 64)  # any keras.applications name works


def test_missing_weights_say_where_keras_looks(tmp_path, monkeypatch):
    from taco.models.backbones import check_backbone

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached weight file
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # offline, deterministically
    with pytest.raises(ConfigError) as err:
        check_backbone("VGG16", 32, "imagenet")
    text = str(err.value)
    assert str(tmp_path / "keras" / "models") in text and "model.weights=null" in text


def test_losses():
    import keras

    from taco.models.losses import WeightedBinaryCrossentropy, make_loss, positive_weights

    y = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.float32)
    np.testing.assert_allclose(positive_weights(y), [3.0, 3.0])
    p = np.array([[0.8, 0.3], [0.1, 0.2], [0.4, 0.9], [0.2, 0.1]], np.float32)
    w = np.array([3.0, 1.0])
    want = -(w * y * np.log(p) + (1 - y) * np.log(1 - p)).mean(1).mean()
    got = float(WeightedBinaryCrossentropy(w.tolist())(y, p))
    assert got == pytest.approx(want, rel=1e-5)
    assert isinstance(make_loss("focal", None), keras.losses.BinaryFocalCrossentropy)
    # another name is refused by the config check, from the classifier's own annotation
    from taco.schema import check_config

    keras_family = {"_target_": "taco.models.keras_classifier.KerasClassifier", "loss": "hinge"}
    with pytest.raises(ConfigError, match=r"loss='hinge' is not allowed: expected 'bce' \| "):
        check_config({"model": {"classifier": keras_family}})


@pytest.mark.parametrize(
    "family, key, value, says",
    [
        ("cnn", "build.dropout", 1.5, "expected a number >= 0 and < 1"),
        ("cnn", "build.filters", [16, 0], "build.filters[1]=0 is not allowed: expected an integer"),
        ("cnn", "fine_tune_layers", -1, "expected an integer >= 0"),
        ("vgg16", "build.weigths", "x", "the keys of taco.models.transfer.build_transfer: "),
        ("xception_rf", "max_features", 1.5, "expected 'sqrt' | 'log2' or a number > 0 and <= 1"),
        ("xception_rf", "n_estimators", 0, "n_estimators=0 is not allowed: expected an integer"),
        ("xception_rf", "loss", "bce", "the keys of taco.models.forest.ForestClassifier: "),
    ],
)
def test_each_family_states_its_own_config_rules(family, key, value, says, compose_cfg):
    """A family's rules are its constructor's (and its network builder's) annotations: a key of
    one family is not allowed in another, and a value out of range is named before a build."""
    from taco.config import resolved_config
    from taco.schema import check_config

    cfg = resolved_config(compose_cfg([f"model={family}"]))
    node = cfg["model"]["classifier"]
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert f"model.classifier.{key}" in str(err.value) and says in str(err.value)


@pytest.mark.subprocess
def test_family_rules_are_read_without_loading_keras():
    code = (
        "import sys; from taco.schema import check_config; "
        "build = {'_target_': 'taco.models.cnn.build_cnn', '_partial_': True, 'dropout': 0.2}; "
        "check_config({'model': {'classifier': {'_target_': "
        "'taco.models.keras_classifier.KerasClassifier', 'build': build}}}); "
        "heavy = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("loss", ["weighted_bce", "focal"])
def test_loss_options_train(loss, compose_cfg, tmp_path, tiny_overrides):
    dm, trainer, classifier = _fitted(
        compose_cfg,
        tiny_overrides,
        tmp_path,
        [
            "model.image_size=32",
            "model.classifier.build.filters=[8]",
            f"model.classifier.loss={loss}",
        ],
    )
    assert np.isfinite(classifier.predict_scores(dm.batches("val"))).all()


def test_random_init_features_are_cached_per_seed_and_pretrained_ones_shared():
    from taco.models.forest import ForestClassifier

    def name(weights, seed):
        forest = ForestClassifier(weights=weights, random_state=seed)
        forest.image_size = 72
        return forest.feature_name()

    assert name(None, 1) != name(None, 2)  # another seed draws another backbone
    assert name("imagenet", 1) == name("imagenet", 2) == "Xception-imagenet-72px"

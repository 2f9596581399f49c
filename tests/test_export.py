"""`taco.export`: a trained Keras model to ONNX and LiteRT, run by each runtime alone, scores
matching the Keras model's."""

from __future__ import annotations

import numpy as np
import pytest

from taco.errors import TacoError


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    """The project's CNN (32 px, 5 classes, its preprocessing inside), saved and loaded back
    as `taco-predict` loads it."""
    import keras

    from taco.models.cnn import build_cnn
    from taco.models.keras_classifier import KerasClassifier

    keras.utils.set_random_seed(0)
    classifier = KerasClassifier(build=lambda **kw: build_cnn(filters=[8, 16], **kw))
    classifier.setup(5, 32)
    folder = tmp_path_factory.mktemp("model")
    classifier.save(folder, {"class_names": list("abcde"), "image_size": 32})
    return keras.saving.load_model(folder / "model.keras", compile=False)


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

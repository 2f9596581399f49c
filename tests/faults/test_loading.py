"""Nothing loaded runs code: a checkpoint or a model folder is data, and data chooses no code."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from taco.errors import TacoError
from taco.training import checkpoint


class _Planted:
    """Unpickling this writes a file: the proof that a load ran code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_forest_checkpoint_holding_a_pickle_runs_nothing(tmp_path):
    from taco.models.forest import ForestClassifier

    planted = tmp_path / "ran"
    blob = np.frombuffer(pickle.dumps(_Planted(str(planted))), np.uint8)
    for key in ("forest", "forest_skops"):  # the old pickled key, and the new key with a pickle
        path = checkpoint.write(tmp_path / f"{key}.ckpt", {key: blob}, {"classifier": "forest"})
        arrays, _ = checkpoint.read(path)
        with pytest.raises(TacoError, match="forest"):
            ForestClassifier().load_checkpoint_state(arrays, source=path)
    assert not planted.exists()


def test_a_forest_checkpoint_round_trips_through_safe_arrays(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    from taco.models.forest import ForestClassifier

    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), (rng.random((40, 3)) > 0.5).astype(int)
    forest = ForestClassifier()
    forest.forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y)
    path = checkpoint.write(tmp_path / "f.ckpt", forest.checkpoint_state(), {})
    arrays, _ = checkpoint.read(path)
    assert all(a.dtype != object for a in arrays.values())
    other = ForestClassifier()
    other.load_checkpoint_state(arrays, source=path)
    for a, b in zip(other.forest.predict_proba(x), forest.forest.predict_proba(x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_model_folder_naming_an_unregistered_loader_imports_nothing(tmp_path, capsys):
    from taco.cli.predict import main as predict_main
    from taco.models.registry import INFO_NAME

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "images").mkdir()
    (folder / INFO_NAME).write_text(json.dumps({"kind": "keras", "loader": "this.s"}))
    import sys

    sys.modules.pop("this", None)
    with pytest.raises(SystemExit) as stop:
        predict_main(["--model-dir", str(folder), str(tmp_path / "images")])
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a registered taco model loader" in err[0]
    assert "this" not in sys.modules  # the Zen of Python was never printed: nothing imported

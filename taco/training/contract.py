"""`check_classifier`: the contract of a model family, run in seconds, as scikit-learn's
`check_estimator` runs an estimator's. Every built-in family and the README's toy family pass it;
a new family runs it first (`tests/test_models.py`). Each broken promise is an AssertionError
that names it.

What it checks, on a few random images through the Trainer's own batches:
- `kind` names the saved format; `check` passes on a supported image size;
- `train_epochs` calls the hooks in order, one epoch for a single-pass family, and stops when
  `epoch_ended` says so;
- `predict_scores` gives (images, classes) scores in [0, 1], the same twice;
- `checkpoint_state` is named arrays that a fresh instance loads to the same scores; so is
  `get_state` through `set_state`;
- `save` writes `taco_model.json` and a folder whose `load_predictor` scores as the model does;
- `set_learning_rate_factor` gives a rate or None; a family with `has_gradients` gives a
  `gradient_model` that takes the images.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from taco.data.pipeline import CachedBatches
from taco.models.base import BaseClassifier
from taco.models.registry import INFO_NAME

TOLERANCE = 1e-5  # scores of the same weights, loaded back


class EpochRecorder:
    """The Trainer's epoch and batch hooks, recording the calls; asks to stop after `stop_after`
    epochs."""

    def __init__(self, batches: CachedBatches, stop_after: int | None = None) -> None:
        self.batches, self.stop_after = batches, stop_after
        self.calls: list[tuple[str, int]] = []
        self.batches_seen = 0

    def epoch_started(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)
        self.calls.append(("started", epoch))

    def epoch_ended(self, epoch: int, loss: float) -> bool:
        self.calls.append(("ended", epoch))
        return self.stop_after is not None and epoch + 1 >= self.stop_after

    def batch_started(self, batch: int) -> None:
        return None

    def batch_ended(self, batch: int, logs: Mapping[str, float]) -> None:
        self.batches_seen += 1


def check_classifier(
    make: Callable[[], BaseClassifier],
    folder: Path,
    image_size: int = 32,
    num_classes: int = 3,
    images: int = 16,
    epochs: int = 2,
) -> None:
    """Run the contract on fresh instances from `make` (built as its config builds it, with any
    cache it keeps outside the checkout), writing its saved model under `folder`."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, image_size, image_size, 3), dtype=np.uint8)
    y = (rng.random((images, num_classes)) < 0.5).astype(np.float32)
    y[0], y[1] = 1, 0  # each class positive and negative at least once

    def batches(shuffle: bool) -> CachedBatches:
        rows = np.arange(images)
        return CachedBatches(x, y, rows, 8, shuffle=shuffle, cache_key="contract", feed_ahead=False)

    def fresh() -> BaseClassifier:
        classifier = make()
        classifier.setup(num_classes, image_size, y)
        return classifier

    classifier = make()
    assert isinstance(classifier, BaseClassifier), f"{type(classifier)} is not a BaseClassifier"
    name = type(classifier).__name__
    assert isinstance(classifier.kind, str) and classifier.kind, f"{name}.kind names no format"
    assert classifier.check(image_size) is None, f"{name}.check refused {image_size} px"
    classifier.setup(num_classes, image_size, y)

    train, held = batches(shuffle=True), batches(shuffle=False)
    wanted = 1 if classifier.single_pass else epochs
    hooks = EpochRecorder(train)
    classifier.train_epochs(train, range(wanted), hooks)
    expected = [(kind, e) for e in range(wanted) for kind in ("started", "ended")]
    assert hooks.calls == expected, f"{name}.train_epochs called {hooks.calls}, not {expected}"
    classifier.end_fit()

    scores = classifier.predict_scores(held)
    assert scores.shape == (images, num_classes), f"{name} scores {scores.shape}"
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all(), (
        f"{name} scores outside [0, 1]"
    )
    again = classifier.predict_scores(held)
    assert np.allclose(again, scores, atol=TOLERANCE), f"{name} scores the same images twice"

    state = classifier.checkpoint_state()
    assert state and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ), f"{name}.checkpoint_state is not named arrays"
    loaded = fresh()
    loaded.load_checkpoint_state(state, source="contract")
    moved = np.abs(loaded.predict_scores(held) - scores).max()
    assert moved <= TOLERANCE, f"{name}: a fresh instance's checkpoint scores differ by {moved}"
    kept = fresh()
    kept.set_state(classifier.get_state())
    moved = np.abs(kept.predict_scores(held) - scores).max()
    assert moved <= TOLERANCE, f"{name}: get_state -> set_state scores differ by {moved}"

    rate = classifier.set_learning_rate_factor(0.5)
    assert rate is None or rate > 0, f"{name}.set_learning_rate_factor gave {rate}"
    if classifier.has_gradients:
        out = np.asarray(classifier.gradient_model()(x[:2]))
        assert out.shape == (2, num_classes), f"{name}.gradient_model gives {out.shape}"

    meta = {
        "class_names": [f"c{i}" for i in range(num_classes)],
        "image_size": image_size,
        "thresholds": [0.5] * num_classes,
    }
    saved = Path(classifier.save(folder / "model", meta))
    info = json.loads((saved / INFO_NAME).read_text())
    assert info["kind"] == classifier.kind, f"{name}.save wrote kind {info['kind']!r}"
    predictor = type(classifier).load_predictor(saved, info)
    moved = np.abs(np.asarray(predictor(x)) - scores).max()
    assert moved <= TOLERANCE, f"{name}: the saved model scores differ by {moved}"

    if not classifier.single_pass:  # epoch_ended's True stops the fit at that epoch
        stopping = fresh()
        train = batches(shuffle=True)
        hooks = EpochRecorder(train, stop_after=1)
        stopping.train_epochs(train, range(epochs + 1), hooks)
        assert hooks.calls == [("started", 0), ("ended", 0)], (
            f"{name} trained on after epoch_ended asked to stop: {hooks.calls}"
        )
        stopping.end_fit()

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
    contract = Contract(make, image_size, num_classes, images, epochs)
    classifier = contract.identity()
    contract.trains(classifier)
    scores = contract.scores(classifier)
    contract.state_round_trips(classifier, scores)
    contract.saves(classifier, scores, folder)
    contract.stops()


class Contract:
    """The promises of `check_classifier`, one method each, on the same random images."""

    def __init__(
        self,
        make: Callable[[], BaseClassifier],
        image_size: int,
        num_classes: int,
        images: int,
        epochs: int,
    ) -> None:
        rng = np.random.default_rng(0)
        self.make, self.size, self.classes, self.epochs = make, image_size, num_classes, epochs
        self.x = rng.integers(0, 256, (images, image_size, image_size, 3), dtype=np.uint8)
        self.y = (rng.random((images, num_classes)) < 0.5).astype(np.float32)
        self.y[0], self.y[1] = 1, 0  # each class positive and negative at least once
        self.name, self.single_pass = "", False

    def batches(self, shuffle: bool) -> CachedBatches:
        rows = np.arange(len(self.x))
        return CachedBatches(
            self.x, self.y, rows, 8, shuffle=shuffle, cache_key="contract", feed_ahead=False
        )

    def fresh(self) -> BaseClassifier:
        classifier = self.make()
        classifier.setup(self.classes, self.size, self.y)
        return classifier

    def identity(self) -> BaseClassifier:
        """A BaseClassifier with a `kind`, whose `check` takes the image size; set up."""
        classifier = self.make()
        assert isinstance(classifier, BaseClassifier), f"{type(classifier)} is not a BaseClassifier"
        self.name = name = type(classifier).__name__
        assert isinstance(classifier.kind, str) and classifier.kind, f"{name}.kind names no format"
        assert classifier.check(self.size) is None, f"{name}.check refused {self.size} px"
        classifier.setup(self.classes, self.size, self.y)
        self.single_pass = classifier.single_pass
        return classifier

    def trains(self, classifier: BaseClassifier) -> None:
        """`train_epochs` calls the hooks in order (one epoch for a single-pass family)."""
        train = self.batches(shuffle=True)
        wanted = 1 if classifier.single_pass else self.epochs
        hooks = EpochRecorder(train)
        classifier.train_epochs(train, range(wanted), hooks)
        expected = [(kind, e) for e in range(wanted) for kind in ("started", "ended")]
        assert hooks.calls == expected, (
            f"{self.name}.train_epochs called {hooks.calls}, not {expected}"
        )
        classifier.end_fit()

    def scores(self, classifier: BaseClassifier) -> np.ndarray:
        """(images, classes) scores in [0, 1], the same twice."""
        held = self.batches(shuffle=False)
        scores = classifier.predict_scores(held)
        name = self.name
        assert scores.shape == (len(self.x), self.classes), f"{name} scores {scores.shape}"
        assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all(), (
            f"{name} scores outside [0, 1]"
        )
        again = classifier.predict_scores(held)
        assert np.allclose(again, scores, atol=TOLERANCE), f"{name} scores the same images twice"
        return scores

    def state_round_trips(self, classifier: BaseClassifier, scores: np.ndarray) -> None:
        """Checkpoint state and `get_state` load into a fresh instance to the same scores; the
        learning rate and gradients answer as the family says."""
        name, held = self.name, self.batches(shuffle=False)
        state = classifier.checkpoint_state()
        assert state and all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
        ), f"{name}.checkpoint_state is not named arrays"
        loaded = self.fresh()
        loaded.load_checkpoint_state(state, source="contract")
        moved = np.abs(loaded.predict_scores(held) - scores).max()
        assert moved <= TOLERANCE, f"{name}: a fresh instance's checkpoint scores differ by {moved}"
        kept = self.fresh()
        kept.set_state(classifier.get_state())
        moved = np.abs(kept.predict_scores(held) - scores).max()
        assert moved <= TOLERANCE, f"{name}: get_state -> set_state scores differ by {moved}"
        rate = classifier.set_learning_rate_factor(0.5)
        assert rate is None or rate > 0, f"{name}.set_learning_rate_factor gave {rate}"
        if classifier.has_gradients:
            out = np.asarray(classifier.gradient_model()(self.x[:2]))
            assert out.shape == (2, self.classes), f"{name}.gradient_model gives {out.shape}"

    def saves(self, classifier: BaseClassifier, scores: np.ndarray, folder: Path) -> None:
        """`save` writes taco_model.json and a folder whose `load_predictor` scores alike."""
        meta = {
            "class_names": [f"c{i}" for i in range(self.classes)],
            "image_size": self.size,
            "thresholds": [0.5] * self.classes,
        }
        saved = Path(classifier.save(folder / "model", meta))
        info = json.loads((saved / INFO_NAME).read_text())
        assert info["kind"] == classifier.kind, f"{self.name}.save wrote kind {info['kind']!r}"
        predictor = type(classifier).load_predictor(saved, info)
        moved = np.abs(np.asarray(predictor(self.x)) - scores).max()
        assert moved <= TOLERANCE, f"{self.name}: the saved model scores differ by {moved}"

    def stops(self) -> None:
        """`epoch_ended` returning True stops the fit at that epoch (a family of epochs)."""
        if self.single_pass:
            return
        stopping = self.fresh()
        train = self.batches(shuffle=True)
        hooks = EpochRecorder(train, stop_after=1)
        stopping.train_epochs(train, range(self.epochs + 1), hooks)
        assert hooks.calls == [("started", 0), ("ended", 0)], (
            f"{self.name} trained on after epoch_ended asked to stop: {hooks.calls}"
        )
        stopping.end_fit()

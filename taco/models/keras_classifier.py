"""KerasClassifier: wraps a keras.Model builder behind the Trainer's classifier protocol.

The protocol (shared with `taco.models.forest.ForestClassifier`):
`check(image_size)`, `setup(num_classes, image_size, train_labels)`,
`fit(batches, epochs, callbacks, initial_epoch)`, `predict_scores(batches) -> (n, classes)`,
`get_state()` / `set_state(state)` (the best weights, in memory), `checkpoint_state()` /
`load_checkpoint_state(arrays)` (everything a resumed run needs, as named arrays), `save(folder)`.

A model with a nested backbone (transfer learning) trains in two stages on one epoch axis: the
head on a frozen backbone for `head_epochs`, then the top `fine_tune_layers` layers of the
backbone at `learning_rate * fine_tune_lr_factor` for the remaining epochs.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from taco.errors import ConfigError, DataError
from taco.models.losses import LOSSES, make_loss

log = logging.getLogger(__name__)


class KerasClassifier:
    kind = "keras"

    def __init__(
        self,
        build: Callable[..., keras.Model],
        learning_rate: float = 1e-3,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        head_epochs: int | None = None,
        fine_tune_layers: int = 0,
        fine_tune_lr_factor: float = 0.1,
    ) -> None:
        if loss not in LOSSES:
            raise ConfigError(f"model.classifier.loss must be one of {LOSSES}; got {loss!r}")
        self.build = build
        self.learning_rate = float(learning_rate)
        self.loss_name = loss
        self.focal_gamma = float(focal_gamma)
        self.head_epochs = head_epochs
        self.fine_tune_layers = int(fine_tune_layers)
        self.fine_tune_lr_factor = float(fine_tune_lr_factor)
        self.model: keras.Model | None = None
        self.fine_tuning = False
        self.stage_learning_rate = self.learning_rate
        self._loss: Any = None

    # ------------------------------------------------------------------ protocol
    def check(self, image_size: int) -> None:
        """Config-time checks that need no data: backbone name and minimum image size."""
        backbone = _keyword(self.build, "backbone")
        if backbone is not None:
            from taco.models.transfer import check_backbone

            check_backbone(backbone, image_size, _keyword(self.build, "weights"))

    def setup(
        self, num_classes: int, image_size: int, train_labels: np.ndarray | None = None
    ) -> None:
        self.model = self.build(num_classes=num_classes, image_size=image_size)
        self._loss = make_loss(self.loss_name, train_labels, self.focal_gamma)
        self.fine_tuning = False
        self.stage_learning_rate = self.learning_rate
        backbone = self.backbone
        if backbone is not None and self.head_epochs != 0:
            backbone.trainable = False
        self._compile(self.learning_rate)

    def fit(
        self,
        batches: Any,
        epochs: int,
        callbacks: Sequence[Any] = (),
        initial_epoch: int = 0,
        verbose: int = 0,
    ) -> None:
        model = self._model()
        staged = self.backbone is not None and self.head_epochs and self.head_epochs < epochs
        if staged and initial_epoch < self.head_epochs:
            model.fit(
                batches,
                initial_epoch=initial_epoch,
                epochs=self.head_epochs,
                callbacks=list(callbacks),
                shuffle=False,
                verbose=verbose,
            )
            if model.stop_training:  # early stopping ends both stages
                return
            initial_epoch = self.head_epochs
        if staged and not self.fine_tuning:
            self._unfreeze_top()
            log.info(
                "fine-tuning the top %s backbone layers from epoch %d at learning rate %g",
                self.fine_tune_layers or "all",
                self.head_epochs + 1,
                self.stage_learning_rate,
            )
        model.fit(  # shuffle=False: the batches shuffle themselves, seeded by epoch
            batches,
            initial_epoch=initial_epoch,
            epochs=epochs,
            callbacks=list(callbacks),
            shuffle=False,
            verbose=verbose,
        )

    def predict_scores(self, batches: Any) -> np.ndarray:
        return np.asarray(self._model().predict(batches, verbose=0), dtype=np.float64)

    def get_state(self) -> list[np.ndarray]:
        return [w.copy() for w in self._model().get_weights()]

    def set_state(self, state: list[np.ndarray]) -> None:
        self._model().set_weights(state)

    def set_learning_rate_factor(self, factor: float) -> float:
        """Scale this stage's learning rate (an LR schedule); returns the rate now in use."""
        rate = self.stage_learning_rate * float(factor)
        self._model().optimizer.learning_rate.assign(rate)
        return rate

    def checkpoint_state(self) -> dict[str, np.ndarray]:
        """All model variables (random generator states included) and the optimizer's slots."""
        model = self._model()
        arrays = {f"model.{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
        if model.optimizer is not None:
            for i, v in enumerate(model.optimizer.variables):
                arrays[f"optimizer.{i}"] = np.asarray(v.numpy())
        arrays["fine_tuning"] = np.asarray(self.fine_tuning)
        return arrays

    def load_checkpoint_state(
        self, arrays: dict[str, np.ndarray], source: Any = "", weights_only: bool = False
    ) -> None:
        """Resume (stage, weights, optimizer), or with `weights_only` take just the weights: the
        best epoch may come from the head stage, whose optimizer had fewer variables."""
        model = self._model()
        resume = not weights_only
        if resume and bool(arrays.get("fine_tuning", False)) and not self.fine_tuning:
            self._unfreeze_top()
        has_optimizer = resume and any(k.startswith("optimizer.") for k in arrays)
        if has_optimizer:
            model.optimizer.build(model.trainable_variables)
        groups = [("model", model.variables)]
        if has_optimizer:
            groups.append(("optimizer", model.optimizer.variables))
        for prefix, variables in groups:
            stored = sorted(
                (k for k in arrays if k.startswith(prefix + ".")),
                key=lambda k: int(k.rsplit(".", 1)[1]),
            )
            shapes = [tuple(arrays[k].shape) for k in stored]
            if shapes != [tuple(v.shape) for v in variables]:
                raise DataError(
                    f"{source}: the checkpoint's {prefix} variables ({len(shapes)}) do not match "
                    f"this model's ({len(variables)}): was it written by another model config?"
                )
            for key, variable in zip(stored, variables, strict=True):
                variable.assign(arrays[key])

    def save(self, folder: Path, meta: dict) -> Path:
        """`model.keras` plus `taco_model.json` (class names, thresholds, image size)."""
        folder.mkdir(parents=True, exist_ok=True)
        self._model().save(folder / "model.keras")
        (folder / "taco_model.json").write_text(json.dumps({"kind": self.kind, **meta}, indent=1))
        return folder

    # ------------------------------------------------------------------ helpers
    @property
    def backbone(self) -> keras.Model | None:
        nested = [layer for layer in self._model().layers if isinstance(layer, keras.Model)]
        return nested[0] if nested else None

    def _unfreeze_top(self) -> None:
        self.fine_tuning = True
        self.stage_learning_rate = self.learning_rate * self.fine_tune_lr_factor
        backbone = self.backbone
        backbone.trainable = True
        if self.fine_tune_layers:
            for layer in backbone.layers[: -self.fine_tune_layers]:
                layer.trainable = False
        self._compile(self.stage_learning_rate)

    def _compile(self, learning_rate: float) -> None:
        self._model().compile(optimizer=keras.optimizers.Adam(learning_rate), loss=self._loss)

    def _model(self) -> keras.Model:
        if self.model is None:
            raise RuntimeError("call setup() before using the classifier")
        return self.model


def _keyword(build: Callable, name: str) -> Any:
    """A keyword bound in a functools.partial (Hydra `_partial_: true`), or its default."""
    keywords = getattr(build, "keywords", {}) or {}
    if name in keywords:
        return keywords[name]
    func = getattr(build, "func", build)
    try:
        param = inspect.signature(func).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is inspect.Parameter.empty else param.default

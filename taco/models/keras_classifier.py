"""KerasClassifier: a keras.Model builder behind `taco.models.base.BaseClassifier`.

All that is Keras about training lives here: one `model.fit` epoch per `train_epoch`, the loss,
the optimizer and its stages, and the plain Keras callbacks a user lists in `conf/callbacks/`
(they see `val_f1_macro` and the other epoch metrics in their `logs`).

A model with a nested backbone (transfer learning) trains in two stages on one epoch axis: the
head on a frozen backbone for `head_epochs`, then the top `fine_tune_layers` layers of the
backbone at `learning_rate * fine_tune_lr_factor` for the remaining epochs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from taco.errors import ConfigError, DataError
from taco.models.base import BaseClassifier
from taco.models.registry import write_info
from taco.protocols import Batches, BatchHooks, EpochHooks
from taco.schema import Built, Count, NonNegative, Positive

if TYPE_CHECKING:
    import keras

# Keras loads in the methods, not here: the config check reads the constructor's annotations
# (the rules of `model.classifier`) before TensorFlow loads
log = logging.getLogger(__name__)

Loss = Literal["bce", "weighted_bce", "focal"]  # taco.models.losses.make_loss


class KerasClassifier(BaseClassifier):
    kind = "keras"
    single_pass = False
    has_gradients = True  # input gradients for `where_it_looks.method=gradient`

    def __init__(
        self,
        # the network: its builder's own annotations check `model.classifier.build`
        build: Annotated[Callable[..., Any], Built(given=("num_classes", "image_size"))],
        learning_rate: Annotated[float, Positive] = 1e-3,
        loss: Loss = "bce",
        focal_gamma: Annotated[float, NonNegative] = 2.0,
        head_epochs: Count | None = None,
        fine_tune_layers: Count = 0,
        fine_tune_lr_factor: Annotated[float, Positive] = 0.1,
    ) -> None:
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
        self.thresholds: np.ndarray | None = None
        self._loss: Any = None
        self._user_callbacks: list[keras.callbacks.Callback] = []
        self._callbacks: keras.callbacks.CallbackList | None = None  # while fitting

    # ------------------------------------------------------------------ protocol
    def check(self, image_size: int) -> None:
        """Config-time checks that need no data: backbone name and minimum image size."""
        backbone = _keyword(self.build, "backbone")
        if backbone is not None:
            from taco.models.backbones import check_backbone

            check_backbone(backbone, image_size, _keyword(self.build, "weights"))

    def use_callbacks(self, callbacks: Sequence[Any]) -> None:
        import keras

        for callback in callbacks:
            if not isinstance(callback, keras.callbacks.Callback):
                kind = f"{type(callback).__module__}.{type(callback).__qualname__}"
                raise ConfigError(
                    f"callbacks: {kind} is neither a taco.training.callbacks.Callback nor a "
                    "keras.callbacks.Callback"
                )
        self._user_callbacks = list(callbacks)

    def setup(
        self, num_classes: int, image_size: int, train_labels: np.ndarray | None = None
    ) -> None:
        from taco.models.losses import make_loss

        self.model = self.build(num_classes=num_classes, image_size=image_size)
        self.thresholds = None
        self._loss = make_loss(self.loss_name, train_labels, self.focal_gamma)
        self.fine_tuning = False
        self.stage_learning_rate = self.learning_rate
        backbone = self.backbone
        if backbone is not None and self.head_epochs != 0:
            backbone.trainable = False
        self._compile(self.learning_rate)

    def train_epochs(self, batches: Batches, epochs: range, hooks: EpochHooks) -> None:
        """One `model.fit` per stage (head, then fine-tuning) for all of `epochs`: the Trainer's
        per-epoch work (validation, callbacks, checkpoints) runs inside it, at each epoch's end,
        so no epoch pays a `fit`'s set-up (about 50 ms on TensorFlow, a new input pipeline)."""
        import keras

        from taco.models.keras_bridge import fit_callbacks, model_input

        model, epoch = self._model(), epochs.start
        while epoch < epochs.stop:
            if self._starts_fine_tuning(epoch):
                self._unfreeze_top()
                log.info(
                    "fine-tuning the top %s backbone layers from epoch %d at learning rate %g",
                    self.fine_tune_layers or "all",
                    epoch + 1,
                    self.stage_learning_rate,
                )
            staged = self.backbone is not None and bool(self.head_epochs) and not self.fine_tuning
            stop = min(epochs.stop, self.head_epochs) if staged else epochs.stop
            if self._callbacks is None:
                self._callbacks = keras.callbacks.CallbackList(self._user_callbacks, model=model)
                self._callbacks.on_train_begin()
            data, steps = model_input(batches, run_on=True)
            model.fit(
                data,
                steps_per_epoch=steps,
                initial_epoch=epoch,
                epochs=stop,
                callbacks=fit_callbacks(model, batches, hooks, self, self._user_callbacks, stop),
                shuffle=False,
                verbose=0,
            )
            if model.stop_training:
                return
            epoch = stop

    def train_epoch(self, batches: Batches, epoch: int, hooks: BatchHooks) -> float:
        """One epoch alone (the Trainer runs `train_epochs`); returns its loss."""
        losses: list[float] = []

        class Once:
            def __init__(self) -> None:
                self.batch_started, self.batch_ended = hooks.batch_started, hooks.batch_ended

            def epoch_started(self, epoch: int) -> None:
                batches.set_epoch(epoch)

            def epoch_ended(self, epoch: int, loss: float) -> bool:
                losses.append(loss)
                return False

        self.train_epochs(batches, range(epoch, epoch + 1), Once())
        return losses[-1] if losses else float("nan")

    def epoch_begins(self, epoch: int) -> None:
        """The user's Keras callbacks' `on_epoch_begin` (inside `fit`, after the Trainer's)."""
        if self._callbacks is not None:
            self._callbacks.on_epoch_begin(epoch)

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """The user's Keras callbacks see the epoch's metrics as `val_f1_macro`, `val_loss`..."""
        logs = {"loss": metrics.get("train/loss", np.nan)}
        logs.update({k.replace("/", "_"): v for k, v in metrics.items()})
        if self._callbacks is not None:
            self._callbacks.on_epoch_end(epoch, logs)
        return bool(self._model().stop_training)

    def end_fit(self) -> None:
        if self._callbacks is not None:
            self._callbacks.on_train_end()
            self._callbacks = None

    def predict_scores(self, batches: Batches) -> np.ndarray:
        from taco.models.keras_bridge import model_input

        data, steps = model_input(batches)  # validation every epoch: one pipeline for all
        scores = self._model().predict(data, steps=steps, verbose=0)
        return np.asarray(scores[: len(batches.targets())], dtype=np.float64)  # no padding

    def get_state(self) -> list[np.ndarray]:
        return [w.copy() for w in self._model().get_weights()]

    def set_state(self, state: list[np.ndarray]) -> None:
        self._model().set_weights(state)

    def set_learning_rate_factor(self, factor: float) -> float | None:
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

    def save(self, folder: Path, meta: Mapping[str, Any]) -> Path:
        """`model.keras` plus `taco_model.json` (class names, thresholds, image size)."""
        folder.mkdir(parents=True, exist_ok=True)
        self._model().save(folder / "model.keras")
        return write_info(folder, self, meta)

    @staticmethod
    def load_predictor(folder: Path, info: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """A saved model as a function: (n, size, size, 3) uint8-range images -> scores."""
        import keras

        import taco.models.backbones  # noqa: F401  (registers the custom layers)
        import taco.models.losses  # noqa: F401

        model = keras.saving.load_model(folder / "model.keras", compile=False)
        return lambda x: np.asarray(model.predict(x, verbose=0), np.float64)

    @staticmethod
    def load_exportable(folder: Path, info: Mapping[str, Any]) -> Any:
        """The saved Keras model itself: Keras exports it to ONNX and to a SavedModel."""
        import keras

        import taco.models.backbones  # noqa: F401  (registers the custom layers)
        import taco.models.losses  # noqa: F401

        return keras.saving.load_model(folder / "model.keras", compile=False)

    def gradient_model(self) -> keras.Model:
        return self._model()

    # ------------------------------------------------------------------ helpers
    def _starts_fine_tuning(self, epoch: int) -> bool:
        staged = self.backbone is not None and bool(self.head_epochs)
        return staged and epoch >= self.head_epochs and not self.fine_tuning

    @property
    def backbone(self) -> keras.Model | None:
        import keras

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
        import keras

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

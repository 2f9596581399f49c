"""A small Lightning-style Trainer: fit, validate (tune thresholds), test. It knows no model kind.

`fit` sets the data module up, builds the classifier and has it train the epochs
(`train_epochs`; a Keras model runs them in one `fit` per stage), called back at each epoch's
start and end: it scores the validation part and hands the metrics to its callbacks
(`taco.training.callbacks`): they log the curves, keep and restore the best epoch, write
`last.ckpt`, stop early, schedule the learning rate, log reports. `validate` tunes one threshold
per class on validation and stores them with the classifier; `test` applies them to the test part.
Saving and restoring the training state is `taco.training.checkpoint.CheckpointConnector`'s job.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from taco.metrics import Evaluation, epoch_scores, evaluate, tune_thresholds
from taco.models.base import BaseClassifier
from taco.progress import Progress
from taco.protocols import Batches, DataModule
from taco.schema import Count, PositiveInt, Probability, Seed
from taco.tracking.base import BaseLogger, NullLogger
from taco.training.callbacks import Callback
from taco.training.checkpoint import CheckpointConnector
from taco.training.hardware import Accelerator, Backend, Devices, Hardware, Precision
from taco.training.profiler import ProfiledLogger, make_profiler

log = logging.getLogger(__name__)


class Trainer:
    """Fits any `taco.models.base.BaseClassifier`; callbacks do the rest (`conf/callbacks/`)."""

    def __init__(
        self,
        max_epochs: PositiveInt = 20,
        callbacks: Sequence[Any] | None = None,
        threshold: Literal["tuned"] | Annotated[float, Probability] = "tuned",
        threshold_min_positives: PositiveInt = 5,
        seed: Seed | None = None,
        deterministic: bool = True,
        limit_train_batches: PositiveInt | None = None,
        limit_val_batches: PositiveInt | None = None,
        limit_test_batches: PositiveInt | None = None,
        fast_dev_run: bool = False,
        overfit_batches: Count = 0,
        check_val_every_n_epoch: PositiveInt = 1,
        accelerator: Accelerator = "auto",
        devices: Devices = "auto",
        precision: Precision = "32",
        profiler: Literal["simple"] | None = None,
        backend: Backend | None = None,
    ) -> None:
        """Each argument's annotation is its rule (`taco.schema` checks the config by it
        before anything is built)."""
        self.max_epochs = 1 if fast_dev_run else int(max_epochs)
        self.threshold, self.seed, self.deterministic = threshold, seed, deterministic
        self.threshold_min_positives = int(threshold_min_positives)
        limits = (limit_train_batches, limit_val_batches, limit_test_batches)
        self.limits = dict(zip(("train", "val", "test"), limits, strict=True))
        self.fast_dev_run = bool(fast_dev_run)
        self.overfit_batches = int(overfit_batches or 0)
        self.check_val_every_n_epoch = int(check_val_every_n_epoch)
        self.hardware = Hardware(accelerator, devices, precision, backend)
        self.profiler = make_profiler(profiler)
        every = list(callbacks or [])
        # ordered by `Callback.order`: checkpoints (order 100) save every other callback's state
        self.callbacks = sorted((c for c in every if isinstance(c, Callback)), key=_order)
        self.model_callbacks = [c for c in every if not isinstance(c, Callback)]
        self.logger: BaseLogger = NullLogger()
        self.classifier: BaseClassifier | None = None
        self.datamodule: DataModule | None = None
        self.callback_metrics: dict[str, float] = {}
        self.epochs_completed = 0  # the one epoch counter: epochs trained so far in this fit
        self.should_stop = False
        self.num_training_batches = 0
        self.fingerprint: dict[str, Any] = {}  # the config a checkpoint must match to resume
        self.ckpt_path: Path | None = None  # the checkpoint this fit resumed from
        self.checkpoints = CheckpointConnector(self)
        self._configured = False
        self._batch_listeners: list[Callback] = []
        self._batch_started = 0.0
        self._epoch: _Epoch | None = None

    # ------------------------------------------------------------------ setup
    @property
    def epochs(self) -> int:
        """Epochs this fit runs: one for a single-pass classifier, else `max_epochs`."""
        single = self.classifier is not None and self.classifier.single_pass
        return 1 if single else self.max_epochs

    def connect(self, classifier: BaseClassifier) -> None:
        """Hand the classifier the callbacks of its own framework (plain Keras callbacks); one
        it cannot drive, or a callback that cannot serve this classifier, fails here, before
        any data work."""
        classifier.use_callbacks(self.model_callbacks)
        for callback in self.callbacks:
            callback.check(classifier)

    def configure_hardware(self) -> None:
        """Choose devices once, before the backend first uses one (an impossible choice fails
        here, before any data work when the entry point calls it first)."""
        if not self._configured:
            self.hardware.configure()
            self._configured = True

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Devices, precision policy and distribution strategy for building and training."""
        self.configure_hardware()
        with self.hardware.scope():
            yield

    def batches(self, datamodule: DataModule, part: str) -> Batches:
        """The batches a stage uses, after fast_dev_run, overfit_batches and limit_*_batches.

        overfit_batches=N trains on the same N un-augmented, unshuffled training batches and
        validates and tests on them too: a model that cannot fit them cannot learn at all.
        """
        profiler = self.profiler if part == "train" else None
        if self.overfit_batches:
            batches = datamodule.batches(
                "train",
                shuffle=False,
                limit_batches=self.overfit_batches,
                augment=False,
                profiler=profiler,
            )
        else:
            limit = 1 if self.fast_dev_run else self.limits[part]
            batches = datamodule.batches(part, limit_batches=limit, profiler=profiler)
        batches.pad_to = self.hardware.batch_multiple()
        return batches

    def is_validation_epoch(self, epoch: int) -> bool:
        """Validation runs every `check_val_every_n_epoch` epochs and after the last one."""
        last = epoch + 1 >= self.epochs
        return (epoch + 1) % self.check_val_every_n_epoch == 0 or last

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        classifier: BaseClassifier,
        datamodule: DataModule,
        logger: BaseLogger | None = None,
        ckpt_path: str | Path | None = None,
    ) -> None:
        """Set the data up, build the model, train; with `ckpt_path`, continue from that
        checkpoint at its next epoch."""
        self.logger = self.timed_logger(logger)
        self.classifier, self.datamodule = classifier, datamodule
        self._setup_data(datamodule)
        self._setup_model(classifier, datamodule)
        if classifier.single_pass and self.max_epochs > 1:
            log.info(
                "trainer.max_epochs=%d does not apply: %s fits in one pass",
                self.max_epochs,
                type(classifier).__name__,
            )
        train, val = self.batches(datamodule, "train"), self.batches(datamodule, "val")
        self.num_training_batches = len(train)
        start = self.checkpoints.restore(classifier, Path(ckpt_path)) if ckpt_path else 0
        self.epochs_completed, self.should_stop = start, False
        self._call("on_fit_start")
        started = time.perf_counter()
        try:
            with self.profiler.section("fit"), self.scope():
                self._epoch_loop(classifier, train, val, start)
            classifier.end_fit()
        except BaseException as error:
            self._call("on_exception", error)
            raise
        finally:
            train.close()  # augmentation workers: none outlives its fit
        seconds = time.perf_counter() - started
        self._call("on_fit_end")
        self._log_fit(train, start, seconds)

    def _setup_data(self, datamodule: DataModule) -> None:
        with self.profiler.section("data_setup"):
            datamodule.prepare_data()
            datamodule.setup()
        tags, record = datamodule.record()
        self.logger.set_tags(tags)
        self.logger.log_dict(record, "split.json")
        self.logger.log_dataset(record)
        skipped = record.get("skipped", [])
        self.logger.log_metrics({"data/skipped_images": len(skipped)})
        if skipped:
            self.logger.log_dict(skipped, "skipped_images.json")

    def _setup_model(self, classifier: BaseClassifier, datamodule: DataModule) -> None:
        if self.seed is not None:
            self.seed_everything(self.seed)
        self.connect(classifier)
        with self.profiler.section("model_setup"), self.scope():
            classifier.setup(
                datamodule.num_classes, datamodule.image_size, datamodule.labels("train")
            )

    def seed_everything(self, seed: int) -> None:
        """Python, NumPy and backend generators; deterministic kernels when asked."""
        import keras

        if keras.backend.backend() != "tensorflow":
            with _without_tensorflow():
                keras.utils.set_random_seed(int(seed))
            return
        keras.utils.set_random_seed(int(seed))
        if self.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()

    def _epoch_loop(
        self, classifier: BaseClassifier, train: Batches, val: Batches, start: int
    ) -> None:
        """The classifier trains the epochs left, calling back at each one's start and end
        (`epoch_started`, `epoch_ended`): a Keras model runs them in one `fit` per stage."""
        if start >= self.epochs:
            log.info("the checkpoint has all %d epochs: nothing left to fit", self.epochs)
            return
        self._batch_listeners = [
            cb for cb in self.callbacks if _overrides(cb, "on_train_batch_end")
        ]
        self._epoch = _Epoch(train, val, val.targets())
        classifier.train_epochs(train, range(start, self.epochs), self)

    # `taco.protocols.EpochHooks`: what the classifier reports around each epoch it trains
    def epoch_started(self, epoch: int) -> None:
        self._epoch.train.set_epoch(epoch)  # shuffling and augmentation seeded by epoch
        self.callback_metrics = {}
        self._epoch.started = time.perf_counter()
        self._call("on_train_epoch_start", epoch)

    def epoch_ended(self, epoch: int, loss: float) -> bool:
        """Score validation (on validation epochs), run the callbacks; True: stop."""
        classifier, state, metrics = self.classifier, self._epoch, self.callback_metrics
        metrics["train/loss"] = float(loss)
        metrics["train_seconds"] = time.perf_counter() - state.started
        if self.is_validation_epoch(epoch):
            with self.profiler.section("validation"), prediction_bar(state.val, "validating"):
                scores = classifier.predict_scores(state.val)
                metrics.update(epoch_scores(state.y_val, scores, self.threshold_min_positives))
        metrics["epoch_seconds"] = time.perf_counter() - state.started
        self.epochs_completed = epoch + 1
        self._call("on_train_epoch_end", epoch)
        if classifier.end_epoch(epoch, metrics):
            self.should_stop = True
        return self.should_stop

    # `taco.protocols.BatchHooks`: what the classifier reports while it trains an epoch
    def batch_started(self, batch: int) -> None:
        self._batch_started = time.perf_counter()

    def batch_ended(self, batch: int, logs: Mapping[str, float]) -> None:
        if self.profiler.enabled:  # the step timed to its end on the device: reading waits
            logs.get("loss")
            self.profiler.add("train_batches", time.perf_counter() - self._batch_started)
        for cb in self._batch_listeners:
            cb.on_train_batch_end(self, self.classifier, batch, logs)

    def _log_fit(self, train: Batches, start: int, seconds: float) -> None:
        trained = self.epochs_completed - start if not self.limits["train"] else 0
        speed = {"train_images_per_second": train.num_images * trained / seconds}
        self.logger.log_metrics(
            {
                "epochs_trained": self.epochs_completed,
                "fit_seconds": seconds,
                **(speed if trained and seconds > 0 else {}),
            }
        )

    # ------------------------------------------------------------------ validate / test
    def validate(
        self, classifier: BaseClassifier, datamodule: DataModule, logger: BaseLogger | None = None
    ) -> Evaluation:
        """Score validation, choose the thresholds (tuned per class, or fixed), store them with
        the classifier and log them."""
        self.classifier, self.datamodule = classifier, datamodule
        logger = self.timed_logger(logger or self.logger)
        with self.profiler.section("validate"), self.scope():
            val = self.batches(datamodule, "val")
            with prediction_bar(val, "validating"):
                y, scores = val.targets(), classifier.predict_scores(val)
        if self.threshold == "tuned":
            classifier.thresholds = tune_thresholds(
                y, scores, min_positives=self.threshold_min_positives
            )
        else:
            classifier.thresholds = np.full(datamodule.num_classes, float(self.threshold))
        result = evaluate(y, scores, classifier.thresholds, datamodule.class_names)
        logger.log_metrics(result.summary("val/final"))
        thresholds = zip(result.class_names, classifier.thresholds, strict=True)
        logger.log_dict({name: float(t) for name, t in thresholds}, "thresholds.json")
        self.validation_positives = [int(n) for n in np.asarray(y).sum(0)]
        logger.log_dict(self.threshold_support(result.class_names), "threshold_support.json")
        self._call("on_validation_end", result)
        return result

    def threshold_support(self, class_names: list[str]) -> dict:
        """What each tuned threshold rests on: the validation positives per class, and the
        classes below `threshold_min_positives` (capped, still fitted to a few images: their
        labels are marked by `taco-compare` and `taco-predict`)."""
        tuned, least = self.threshold == "tuned", self.threshold_min_positives
        counts = getattr(self, "validation_positives", [])  # none: thresholds from elsewhere
        positives = dict(zip(class_names, counts, strict=True)) if counts else {}
        return {
            "min_positives": least,
            "validation_positives": positives,
            "below_minimum": [c for c, n in positives.items() if tuned and n < least],
        }

    def test(
        self, classifier: BaseClassifier, datamodule: DataModule, logger: BaseLogger | None = None
    ) -> Evaluation:
        """Apply the validation thresholds to the test part and log per-class scores."""
        self.classifier, self.datamodule = classifier, datamodule
        if classifier.thresholds is None:
            self.validate(classifier, datamodule, logger)
        logger = self.timed_logger(logger or self.logger)
        with self.profiler.section("test"), self.scope():
            test = self.batches(datamodule, "test")
            with prediction_bar(test, "testing"):
                y, scores = test.targets(), classifier.predict_scores(test)
        result = evaluate(y, scores, classifier.thresholds, datamodule.class_names)
        logger.log_metrics({**result.summary("test"), **result.per_class("test")})
        self._call("on_test_end", result)
        return result

    def timed_logger(self, logger: BaseLogger | None) -> BaseLogger:
        """The logger, timed as `logging` when the profiler is on (wrapped once)."""
        logger = logger or NullLogger()
        if not self.profiler.enabled or isinstance(logger, ProfiledLogger):
            return logger
        return ProfiledLogger(logger, self.profiler)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, self.classifier, *args)


@dataclass
class _Epoch:
    """What the epoch hooks of one fit share: the parts' batches, validation's labels and when
    the current epoch started."""

    train: Batches
    val: Batches
    y_val: np.ndarray
    started: float = 0.0


@contextlib.contextmanager
def _without_tensorflow() -> Iterator[None]:
    """`keras.utils.set_random_seed` seeds TensorFlow too whenever it is installed, importing it
    (seconds, and hundreds of MB) into a JAX run that never uses it: hide it for that call."""
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    if lazy.module is not None or not hasattr(lazy, "_available"):
        yield  # already imported (or a Keras without the lazy module): nothing to save
        return
    saved, lazy._available = lazy._available, False
    try:
        yield
    finally:
        lazy._available = saved


def _order(callback: Callback) -> int:
    return int(getattr(callback, "order", 0))


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)


@contextlib.contextmanager
def prediction_bar(batches: Batches, label: str) -> Iterator[None]:
    """A bar over the batches a prediction pass reads (on a terminal; see taco.progress)."""
    batches.progress = Progress(len(batches), label, unit="batch", leave=False)
    try:
        yield
    finally:
        batches.progress.close()
        batches.progress = None

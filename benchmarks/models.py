"""Model-family throughput and the feature cache's payoff for a sweep of forests.

Side by side in one run, on this machine, at each family's default image size with
`weights=None` (the same compute as ImageNet weights, which cannot be downloaded here):
  - training and prediction throughput (img/s) of cnn, vgg16, xception and xception_rf;
  - the wall time of one forest (feature extraction + fit) against a sweep of 4 forests with
    different hyper-parameters sharing the features cached on disk by the first.
Uses the embedded synthetic data set (generated on first use) through the real DataModule.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import taco  # noqa: F401

SIZES = {"cnn": 64, "vgg16": 96, "xception": 96, "xception_rf": 96}


def datamodule(root: Path, image_size: int, images: int):
    from taco.data.datamodule import TacoDataModule
    from taco.data.sources.synthetic import SyntheticTaco

    dm = TacoDataModule(
        "synthetic",
        root / "synthetic",
        generator=SyntheticTaco(num_images=images),
        image_size=image_size,
        cache_dir=root / "cache",
        seed=0,
    )
    dm.prepare_data()
    dm.setup()
    return dm


class _NoHooks:
    """The Trainer's batch hooks, doing nothing: the classifier alone is measured."""

    def batch_started(self, batch: int) -> None: ...
    def batch_ended(self, batch: int, logs) -> None: ...


def fit(classifier, batches, epochs: int = 1) -> None:
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        classifier.train_epoch(batches, epoch, _NoHooks())
    classifier.end_fit()


def keras_throughput(name: str, dm, epochs: int = 1) -> tuple[float, float]:
    import keras

    from taco.models.cnn import build_cnn
    from taco.models.keras_classifier import KerasClassifier
    from taco.models.transfer import build_transfer

    keras.backend.clear_session()
    if name == "cnn":
        clf = KerasClassifier(build_cnn, learning_rate=0.004)
    else:
        backbone = {"vgg16": "VGG16", "xception": "Xception"}[name]

        def build(**kw):
            return build_transfer(backbone=backbone, weights=None, **kw)

        # the fine-tuning stage: the slower, gradient-through-the-backbone case
        clf = KerasClassifier(build, head_epochs=0, fine_tune_layers=8)
    clf.setup(dm.num_classes, dm.image_size, dm.labels("train"))
    train = dm.batches("train", limit_batches=2)
    fit(clf, train)  # warm-up: tracing and compilation
    train = dm.batches("train")
    start = time.perf_counter()
    fit(clf, train, epochs)
    fit_rate = train.num_images * epochs / (time.perf_counter() - start)
    test = dm.batches("test")
    clf.predict_scores(test)
    start = time.perf_counter()
    clf.predict_scores(test)
    return fit_rate, test.num_images / (time.perf_counter() - start)


def forest_run(dm, features_dir: Path, **params) -> tuple[float, float, float, bool]:
    """(fit seconds, predict img/s, feature seconds, features reused from disk)."""
    from taco.models.forest import ForestClassifier

    clf = ForestClassifier("Xception", None, features_dir, **params)
    clf.setup(dm.num_classes, dm.image_size, dm.labels("train"))
    train = dm.batches("train", shuffle=False)
    reused = any(features_dir.glob("*.npy"))
    start = time.perf_counter()
    clf.features(train)
    feature_seconds = time.perf_counter() - start
    fit(clf, train)
    fit_time = time.perf_counter() - start
    test = dm.batches("test")
    start = time.perf_counter()
    clf.predict_scores(test)
    return fit_time, test.num_images / (time.perf_counter() - start), feature_seconds, reused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800, help="synthetic data set size")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--forest-only", action="store_true", help="skip the Keras families")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="taco-bench-models-"))
    try:
        print(f"{args.images} synthetic images; train/predict throughput on this machine:")
        for name in () if args.forest_only else ("cnn", "vgg16", "xception"):
            dm = datamodule(tmp, SIZES[name], args.images)
            fit, pred = keras_throughput(name, dm, args.epochs)
            size = SIZES[name]
            print(f"  {name:<12} {size:>3} px  train {fit:7.1f} img/s  predict {pred:7.1f} img/s")

        dm = datamodule(tmp, SIZES["xception_rf"], args.images)
        one, pred, feature_seconds, _ = forest_run(dm, tmp / "features_one")
        fit_rate = len(dm.labels("train")) / one
        print(
            f"  {'xception_rf':<12} {96:>3} px  train {fit_rate:7.1f} img/s  predict {pred:7.1f} "
            f"img/s  (feature extraction {feature_seconds:.1f} s of {one:.1f} s)"
        )
        # a leaf-size sweep around the default (200 trees, min_samples_leaf 2)
        grid = [{"min_samples_leaf": leaf} for leaf in (2, 3, 4, 6)]
        start = time.perf_counter()
        reused = []
        for params in grid:
            reused.append(forest_run(dm, tmp / "features_sweep", **params)[3])
        sweep = time.perf_counter() - start
        print(
            f"one forest: {one:.1f} s; sweep of {len(grid)} forests sharing cached features: "
            f"{sweep:.1f} s ({sweep / one:.2f}x one forest; features reused by "
            f"{sum(reused)} of {len(grid)})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

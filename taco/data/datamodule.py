"""The DataModule: one object that turns a dataset config into train / val / test batches.

`prepare_data()` writes or checks the files once; `setup()` loads labels, builds the image cache
and splits. The same class serves the embedded synthetic data set and real TACO; it implements
`taco.protocols.DataModule`, and nothing outside `taco/data` reads its cache or rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from taco.config import usable_cores
from taco.data.classmaps import Rare
from taco.data.coco import LabelSet, load_labelset
from taco.data.images import (
    ImageCache,
    ImageLimits,
    OnBadImage,
    Resize,
    boxes_in_frame,
    build_cache,
    check_cache_space,
)
from taco.data.split import PARTS, SplitFractions, fold_rows, split_rows
from taco.errors import ConfigError, DataError
from taco.process import feed_cores
from taco.schema import Built, Count, PositiveInt, Range, Seed

if TYPE_CHECKING:
    from taco.data.pipeline import CachedBatches

log = logging.getLogger(__name__)


class TacoDataModule:
    def __init__(
        self,
        name: str,
        root: str | Path,
        annotation_file: str = "annotations.json",
        label_level: str = "supercategory",
        min_images: Count = 0,
        rare: Rare = "merge",
        split: SplitFractions | None = None,
        batch_size: PositiveInt = 32,
        resize: Resize = "squash",
        on_bad_image: OnBadImage = "error",
        unlabeled: Literal["keep", "drop"] = "keep",
        max_pixels: PositiveInt | None = 100_000_000,
        generator: Annotated[dict, Built()] | None = None,
        missing_hint: str = "",
        image_size: PositiveInt = 64,
        cache_dir: str | Path | None = None,
        augmentation: Any = None,  # a built transform, or {} (augmentation=none): none
        seed: Seed = 0,
        decode_workers: PositiveInt | None = None,
        num_workers: Count | Literal["auto"] = "auto",
        prefetch_factor: PositiveInt = 2,
        split_seed: Seed | None = None,
        folds: Annotated[int, Range(2)] | None = None,
        fold: Count = 0,
    ) -> None:
        """Each argument's annotation is its rule (`taco.schema` checks `dataset.*` by it)."""
        self.name, self.root = name, Path(root)
        self.annotation_path = self.root / annotation_file
        self.label_level, self.min_images, self.rare = label_level, int(min_images or 0), rare
        self.fractions = dict(split or {"train": 0.7, "val": 0.15, "test": 0.15})
        self.batch_size = int(batch_size)
        self.resize, self.on_bad_image = resize, on_bad_image
        self.unlabeled = unlabeled  # images without annotations: keep (all-negative) | drop
        self.max_pixels, self.image_size = max_pixels, int(image_size)
        self.generator, self.missing_hint = generator, missing_hint
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".cache"
        self.augmentation = augmentation if callable(augmentation) else None  # none: {}
        self.seed = int(seed)  # shuffling and augmentation
        self.split_seed = self.seed if split_seed is None else int(split_seed)  # the split
        # k-fold cross-validation: test is fold `fold` of `folds` (None: one split by fractions)
        self.folds, self.fold = (int(folds), int(fold)) if folds else (None, 0)
        # processes that decode the images, and that augment batches (taco.data.augment_pool)
        self.decode_workers, self.num_workers = decode_workers, num_workers
        self.prefetch_factor = int(prefetch_factor)  # batches ahead, per augmentation worker
        self.indexed: LabelSet | None = None  # labels, before any image is decoded
        self.labelset: LabelSet | None = None  # labels of the decoded cache (setup)
        self.cache, self.rows = None, {}  # the decoded images, and each part's rows in them
        self.skipped: list = []
        self.skipped_classes: list[str] = []  # classes a fold tests without training on

    @staticmethod
    def config_problem(node: Mapping[str, Any]) -> tuple[str, Any, str] | None:
        """The rule between two keys, which an annotation cannot state (`taco.schema` asks it
        before anything is built): the test fold is one of the folds."""
        folds, fold = node.get("folds"), node.get("fold", 0)
        if isinstance(folds, int) and isinstance(fold, int) and not 0 <= fold < folds:
            return "fold", fold, f"an integer >= 0 and < dataset.folds={folds}"
        return None

    # ------------------------------------------------------------------ lifecycle
    def prepare_data(self) -> None:
        """Write the synthetic data set (skipped when current) or check the real one is there."""
        if self.generator is not None:
            self.generator.write(self.root)
            return
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}. {self.missing_hint}".strip())
        if not self.annotation_path.is_file():
            raise DataError(
                f"annotation file not found: {self.annotation_path}. {self.missing_hint}".strip()
            )

    def load_labels(self) -> LabelSet:
        """Annotations -> multi-hot labels under the configured class map (no image decoding),
        images without annotations kept or dropped (`unlabeled`); read once."""
        if self.indexed is None:
            labelset = load_labelset(
                self.annotation_path, self.root, self.label_level, self.min_images, self.rare
            )
            labelset = _apply_unlabeled(labelset, self.unlabeled)
            _check_classes(labelset, self)
            self.indexed = labelset
        return self.indexed

    def split(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        names = self.load_labels().class_names
        if not self.folds:
            parts = split_rows(labels, self.fractions, self.split_seed)
            _check_parts(labels, parts, names, self.split_seed)
            return parts
        parts = fold_rows(labels, self.fractions, self.folds, self.fold, self.split_seed)
        lacking = _untrained(labels, parts, names)
        if lacking and not self.skipped_classes:  # held out once each: nothing else can be done
            self.skipped_classes = lacking  # warned once (check() and setup() both split)
            log.warning(
                "fold %d of %d tests class(es) %s without a training image (too few images to "
                "spread over the folds; dataset.min_images merges or drops them)",
                self.fold,
                self.folds,
                lacking,
            )
        return parts

    def check(self) -> None:
        """Files, annotations, class map and split, without decoding an image: what can be
        refused is refused before a run opens."""
        self.prepare_data()
        labels = self.load_labels()
        self.split(labels.labels)
        check_cache_space(
            labels.paths, labels.content_hash, self.image_size, self.resize, self.cache_dir
        )

    def setup(self) -> None:
        """Labels -> decode cache (every bad image reported at once) -> seeded stratified split.
        Done once: a second call keeps what the first built."""
        if self.labelset is not None:
            return
        labelset = self.load_labels()
        cache = build_cache(
            labelset.paths,
            labelset.sizes,
            self.image_size,
            self.cache_dir,
            labelset.content_hash,
            resize=self.resize,
            on_bad_image=self.on_bad_image,
            workers=self.decode_workers,
            limits=ImageLimits(self.root, self.max_pixels),
        )
        self.skipped = [b for _, b in cache.bad]
        if self.skipped:
            log.warning(
                "skipping %d unusable images (dataset.on_bad_image=skip)", len(self.skipped)
            )
        usable = cache.good_rows
        self.labelset, self.cache = labelset, cache
        parts = self.split(labelset.labels[usable])
        self.rows = {part: usable[r] for part, r in parts.items()}
        log.info(
            "%s: %d images, %d classes; split %s",
            self.name,
            len(labelset),
            len(labelset.class_names),
            {p: len(r) for p, r in self.rows.items()},
        )

    # ------------------------------------------------------------------ access
    @property
    def class_names(self) -> list[str]:
        return self._labels().class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def cache_key(self) -> str:
        """Names the image cache: what caches derived from it (features) are keyed on."""
        return self._cache().path.stem

    def labels(self, part: str) -> np.ndarray:
        return self._labels().labels[self.rows[part]]

    def batches(
        self,
        part: str,
        shuffle: bool | None = None,
        limit_batches: int | None = None,
        augment: bool | None = None,
        profiler: Any = None,
    ) -> CachedBatches:
        """Keras batches of one part; by default only the training part is shuffled and
        augmented. A `profiler` times batch reading."""
        from taco.data.pipeline import CachedBatches

        labelset = self._labels()
        train = part == "train"
        augment = self.augmentation if (train if augment is None else augment) else None
        return CachedBatches(
            self._cache().array,
            labelset.labels,
            self.rows[part],
            self.batch_size,
            shuffle=train if shuffle is None else shuffle,
            seed=self.seed,
            augment=augment,
            limit_batches=limit_batches,
            cache_key=self.cache_key,
            profiler=profiler,
            num_workers=augment_workers(self.num_workers) if augment else 0,
            prefetch_factor=self.prefetch_factor,
            cache_path=self._cache().path,
        )

    def boxes(self, part: str) -> list[np.ndarray]:
        """Each image's object boxes in the picture the model sees: (k, 5) rows of class
        column, x0, y0, x1, y1 in pixels of the image_size x image_size input."""
        labelset = self._labels()
        return [
            boxes_in_frame(labelset.boxes[r], *labelset.sizes[r], self.image_size, self.resize)
            for r in self.rows[part]
        ]

    def images(self, part: str) -> np.ndarray:
        """A part's cached images (uint8), in the order of its labels."""
        return np.asarray(self._cache().array[self.rows[part]])

    def sample(self, part: str, n: int) -> np.ndarray:
        """The first `n` cached images of a part (uint8), e.g. for previews."""
        return np.asarray(self._cache().array[np.sort(self.rows[part][:n])])

    def record(self) -> tuple[dict[str, str], dict[str, Any]]:
        """(tags, split record) to log with a run: the annotations' hash, and the image ids
        (COCO ids) of each part with the skipped images."""
        labelset = self._labels()
        unlabeled = labelset.meta.get("unlabeled_ids", [])
        return {
            "dataset_sha256": labelset.content_hash[:16],
            "images_unlabeled": f"{len(unlabeled)} ({self.unlabeled})",
        }, {
            "dataset": self.name,
            "source": str(self.annotation_path.resolve()),
            "seed": self.seed,
            "split_seed": self.split_seed,
            "fractions": self.fractions,
            "folds": self.folds,
            "fold": self.fold,
            "label_level": str(self.label_level),
            "class_names": labelset.class_names,
            "rare": {k: v for k, v in labelset.meta.items() if k.startswith("rare_")},
            "annotation_sha256": labelset.content_hash,
            **{part: labelset.image_ids[self.rows[part]].tolist() for part in PARTS},
            "skipped": [b.__dict__ for b in self.skipped],
            "unlabeled": {"policy": self.unlabeled, "image_ids": unlabeled},
        }

    # ------------------------------------------------------------------ a report of the data
    def split_labels(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(class names, each part's labels) as a run with this config splits them. Images are
        decoded (and cached) only with `on_bad_image=skip`, where which are unusable decides
        the split; otherwise the annotations alone suffice."""
        if self.on_bad_image == "skip":
            self.setup()
            return self.class_names, {part: self.labels(part) for part in self.rows}
        labelset = self.load_labels()
        parts = self.split(labelset.labels)
        return labelset.class_names, {part: labelset.labels[r] for part, r in parts.items()}

    def notes(self) -> list[str]:
        """What a report of the data states besides counts: class map, split, images left out."""
        unlabeled = len(self.load_labels().meta.get("unlabeled_ids", []))
        folds = f", fold {self.fold} of {self.folds}" if self.folds else ""
        return [
            f"Class map: {self.label_level}; split seed {self.split_seed}{folds}",
            f"Images skipped as unusable (dataset.on_bad_image=skip): {len(self.skipped)}",
            f"Images without annotations: {unlabeled} (dataset.unlabeled={self.unlabeled})",
        ]

    def _cache(self) -> ImageCache:
        if self.cache is None:
            raise RuntimeError("call setup() before using the data module")
        return self.cache

    def _labels(self) -> LabelSet:
        if self.labelset is None:
            raise RuntimeError("call setup() before using the data module")
        return self.labelset


def _apply_unlabeled(labelset: LabelSet, policy: str) -> LabelSet:
    """Images without any annotation: counted and reported; kept all-negative, or dropped."""
    ids = labelset.meta.get("unlabeled_ids", [])
    if not ids:
        return labelset
    action = "kept as all-negative" if policy == "keep" else "left out"
    log.warning(
        "%d of %d images have no annotation: %s (dataset.unlabeled=%s)",
        len(ids),
        len(labelset),
        action,
        policy,
    )
    if policy == "keep":
        return labelset
    kept = np.flatnonzero(~np.isin(labelset.image_ids, ids))
    return labelset.subset(kept)


def _check_classes(labelset: LabelSet, dm: TacoDataModule) -> None:
    names = labelset.class_names
    if len(names) < 2:
        raise ConfigError(
            f"dataset.label_level={dm.label_level} with dataset.min_images={dm.min_images} "
            f"(rare={dm.rare}) leaves {len(names)} class(es) {names}: a classifier needs at "
            "least two; lower dataset.min_images or choose another class map"
        )
    if len(labelset) == 0:
        raise ConfigError(f"dataset {dm.name}: no image is left (dataset.unlabeled=drop?)")


def _check_parts(
    labels: np.ndarray, parts: dict[str, np.ndarray], names: list[str], seed: int
) -> None:
    """Refuse a split that tests a class it never trains on (a class absent everywhere is
    allowed: it scores zero support)."""
    lacking = _untrained(labels, parts, names)
    if lacking:
        raise ConfigError(
            f"dataset.split (dataset.split_seed={seed}) leaves class(es) {lacking} without a "
            "training image: raise dataset.min_images to merge or drop rare classes, change "
            "dataset.split, or use another dataset.split_seed"
        )


def _untrained(labels: np.ndarray, parts: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """Classes that the held-out parts have and the training part lacks."""
    train = labels[parts["train"]].sum(0)
    elsewhere = labels.sum(0) - train
    return [names[j] for j in np.flatnonzero((train == 0) & (elsewhere > 0))]


def augment_workers(num_workers: int | str) -> int:
    """`dataset.num_workers`: a count, or `auto`: one augmentation process per usable core, or
    per core of this job's share when a joblib sweep runs jobs side by side."""
    if num_workers != "auto":
        return int(num_workers)
    cores = feed_cores()  # the job's share, set when the job started
    return len(cores) if cores is not None else usable_cores()

"""Seeded multi-label stratified train/val/test split (iterative stratification, Sechidis 2011)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from taco.errors import ConfigError
from taco.schema import Fraction


@dataclass
class SplitFractions:
    """`dataset.split`: a mapping of each part's share of the images (the rule of its keys)."""

    train: Annotated[float, Fraction]
    val: Annotated[float, Fraction]
    test: Annotated[float, Fraction]


PARTS = ("train", "val", "test")


def split_rows(
    labels: np.ndarray, fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Rows of `labels` for each of train, val and test; the same seed gives the same split."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    fr = _check_fractions(fractions)
    n = len(labels)
    if n < 3:
        raise ConfigError(f"a split needs at least 3 images; the data set has {n}")
    rows = np.arange(n)
    x = np.zeros((n, 1))
    holdout = fr["val"] + fr["test"]
    first = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=holdout, random_state=seed)
    train, rest = next(first.split(x, labels))
    test_share = fr["test"] / holdout
    second = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=test_share, random_state=seed + 1
    )
    val, test = next(second.split(x[rest], labels[rest]))
    out = {"train": rows[train], "val": rows[rest][val], "test": rows[rest][test]}
    empty = [part for part, r in out.items() if len(r) == 0]
    if empty:
        raise ConfigError(
            f"dataset.split gives an empty {', '.join(empty)} part for {n} images; "
            "use more images or larger fractions"
        )
    return {part: np.sort(r) for part, r in out.items()}


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    keys = set(fractions)
    if keys != set(PARTS):
        raise ConfigError(f"dataset.split must have exactly the keys {PARTS}; got {sorted(keys)}")
    fr = {k: float(fractions[k]) for k in PARTS}
    if any(v <= 0 for v in fr.values()) or abs(sum(fr.values()) - 1) > 1e-6:
        raise ConfigError(f"dataset.split fractions must be > 0 and sum to 1; got {fr}")
    return fr


def fold_rows(
    labels: np.ndarray, fractions: Mapping[str, float], folds: int, fold: int, seed: int
) -> dict[str, np.ndarray]:
    """Rows of each part for fold `fold` of `folds`-fold cross-validation: test is that fold
    (multi-label stratified k-fold); the other folds are split into train and a stratified
    validation part (`val / (train + val)` of them), which tunes thresholds and early stopping
    so nothing is tuned on the held-out fold. The same seed gives the same folds for every fold
    index, so the test parts of a sweep over `fold` cover every image once."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

    fr = _check_fractions(fractions)
    folds, fold, n = int(folds), int(fold), len(labels)
    if folds < 2:
        raise ConfigError(f"dataset.folds must be at least 2 (or null for one split); got {folds}")
    if not 0 <= fold < folds:
        raise ConfigError(f"dataset.fold must be in 0..{folds - 1} for dataset.folds={folds}")
    if n < 2 * folds:
        raise ConfigError(
            f"{folds}-fold cross-validation needs at least {2 * folds} images; got {n}"
        )
    rows, x = np.arange(n), np.zeros((n, 1))
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rest, test = list(splitter.split(x, labels))[fold]
    inner = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=fr["val"] / (fr["train"] + fr["val"]), random_state=seed + 1
    )
    train, val = next(inner.split(x[rest], labels[rest]))
    out = {"train": rows[rest][train], "val": rows[rest][val], "test": rows[test]}
    return {part: np.sort(r) for part, r in out.items()}

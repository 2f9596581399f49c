"""Seeded multi-label stratified train/val/test split (iterative stratification, Sechidis 2011)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from taco.errors import ConfigError

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

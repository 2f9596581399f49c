"""The floors every report shows beside the models: the F1 of predicting every class on every
image, and of predicting each class at random at its prevalence. A model whose interval reaches
a floor has not been shown to beat chance (on the embedded data the random-init backbones sit
there)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EVERY = "floor: every class"
PREVALENCE = "floor: prevalence"


@dataclass(frozen=True)
class Floors:
    """Per-class floors (NaN where a class has no positive) and their macro averages."""

    class_names: list[str]
    every: np.ndarray  # F1 of predicting the class on every image: 2s / (s + N)
    prevalence: np.ndarray  # predicting it at random at its prevalence p: F1 = p (in counts)

    def f1(self, kind: str, row: str) -> float:
        values = self.every if kind == EVERY else self.prevalence
        if row == "macro F1":
            return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
        if row in self.class_names:
            return float(values[self.class_names.index(row)])
        return float("nan")

    def best(self, row: str) -> float:
        """The higher of the two floors for the row (what a model must clear)."""
        return float(np.nanmax([self.f1(EVERY, row), self.f1(PREVALENCE, row), -1.0]))


def floors(y_true: np.ndarray, class_names: Sequence[str]) -> Floors:
    """The floors on the images of `y_true` (N x C, multi-hot)."""
    y = np.asarray(y_true, float)
    n, s = len(y), y.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        every = np.where(s > 0, 2 * s / (s + n), np.nan)
        prevalence = np.where(s > 0, s / max(n, 1), np.nan)
    return Floors(list(class_names), every, prevalence)


def mean_floors(parts: Sequence[Floors]) -> Floors:
    """The mean over several test sets (seeds on different splits): per class, then macro."""
    with warnings.catch_warnings():  # a class without positives on every split: NaN, expected
        warnings.simplefilter("ignore", RuntimeWarning)
        every = np.nanmean([p.every for p in parts], axis=0)
        prevalence = np.nanmean([p.prevalence for p in parts], axis=0)
    return Floors(parts[0].class_names, every, prevalence)


def at_floor(low: float, floor: float) -> bool:
    """An interval (its lower end `low`, or the value itself) reaching the floor."""
    return not np.isnan(low) and not np.isnan(floor) and low <= floor


def floor_mark(low: float, high: float, floor: float) -> str:
    """ " ↓" for an interval wholly below the floor (worse than predicting every class, or than
    chance), " †" for one that reaches it (not shown to beat it), "" above it."""
    if not np.isnan(high) and not np.isnan(floor) and high < floor:
        return " ↓"
    return " †" if at_floor(low, floor) else ""

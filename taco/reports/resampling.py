"""Per-class and macro F1 over resampled images: bootstrap intervals, paired permutation tests
between two models scored on the same images, and Holm's correction across classes.

F1 is computed from counts, so a resample is a vector of image weights (how often each image is
drawn, or which model's decisions an image takes) and thousands of resamples are a few matrix
products. A class with no positive image is undefined (NaN) and left out of the macro average,
as in `taco.metrics.evaluate`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def f1_from_weights(
    weights: np.ndarray, y: np.ndarray, decided: np.ndarray, fixed: np.ndarray | None = None
) -> np.ndarray:
    """Per-class F1 for each row of image weights (R x N) -> (R x C); NaN without positives.

    `fixed` (C values: each class's F1 on the full data, NaN outside the set): the class set of
    the full data, kept in every resample. A class of the set that a resample happens to draw
    no positive of takes its full-data F1 there. Without it a rare class would leave the macro
    average in some resamples and not in others, and the macro interval would mix averages over
    different classes; scoring it 0 or 1 instead would pull the interval down or up."""
    y, decided = y.astype(float), decided.astype(float)
    tp = weights @ (y * decided)
    fp = weights @ ((1 - y) * decided)
    positives = weights @ y
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (tp + fp + positives)
    f1 = np.where(positives > 0, f1, np.nan)
    if fixed is not None:
        f1 = np.where(positives > 0, f1, fixed)
        f1 = np.where(np.isnan(fixed), np.nan, f1)
    return f1


def macro(f1: np.ndarray) -> np.ndarray:
    """Mean over the defined classes of each row (NaN where none is)."""
    defined = ~np.isnan(f1)
    total = np.where(defined, f1, 0).sum(-1)
    count = defined.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class Interval:
    """Per-class and macro F1 on all images, with percentile bootstrap intervals."""

    f1: np.ndarray  # (C,)
    low: np.ndarray
    high: np.ndarray
    macro: float
    macro_low: float
    macro_high: float


def bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """How often each of `n` images is drawn in each resample (R x N), from one seeded stream:
    the same seed gives the same resamples, and two models given them are compared paired."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(float)


def bootstrap_interval(
    y: np.ndarray, decided: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> Interval:
    """F1 per class and macro F1, each with its `level` percentile bootstrap interval."""
    point = f1_from_weights(np.ones((1, len(y))), y, decided)[0]
    f1 = f1_from_weights(weights, y, decided)
    fixed = f1_from_weights(weights, y, decided, fixed=point)
    tail = 100 * (1 - level) / 2
    with np.errstate(invalid="ignore"), _quiet():
        low, high = np.nanpercentile(f1, [tail, 100 - tail], axis=0)
        macro_low, macro_high = np.nanpercentile(macro(fixed), [tail, 100 - tail])
    undefined = np.isnan(point)
    return Interval(
        f1=point,
        low=np.where(undefined, np.nan, low),
        high=np.where(undefined, np.nan, high),
        macro=float(macro(point)),
        macro_low=float(macro_low),
        macro_high=float(macro_high),
    )


@dataclass(frozen=True)
class PairedTest:
    """Model A against model B on the same images: F1 differences (A - B) and their p-values."""

    diff: np.ndarray  # (C,) per-class F1 difference; NaN where the class has no positive
    p: np.ndarray  # (C,) two-sided permutation p-values
    p_holm: np.ndarray  # (C,) Holm-adjusted across the defined classes
    macro_diff: float
    macro_p: float
    macro_low: float  # paired bootstrap interval of the macro difference
    macro_high: float
    se: np.ndarray | None = None  # (C,) bootstrap standard error of each class's difference
    macro_se: float = float("nan")

    def detectable(self, alpha: float, tests: int, power: float = 0.8) -> np.ndarray:
        """Per class, the smallest F1 difference a two-sided test at alpha / tests (Holm's
        strictest step) finds with probability `power`: (z(1 - a/2) + z(power)) * SE."""
        if self.se is None:  # built without its bootstrap (a fabricated test): unknown
            return np.full(len(self.diff), np.nan)
        return _detectable(self.se, alpha, tests, power)

    def macro_detectable(self, alpha: float, tests: int, power: float = 0.8) -> float:
        return float(_detectable(np.array([self.macro_se]), alpha, tests, power)[0])


def _detectable(se: np.ndarray | None, alpha: float, tests: int, power: float) -> np.ndarray:
    from scipy import stats

    if se is None:
        return np.array([np.nan])
    z = stats.norm.ppf(1 - alpha / (2 * max(tests, 1))) + stats.norm.ppf(power)
    return z * np.asarray(se, float)


def paired_permutation(
    y: np.ndarray,
    decided_a: np.ndarray,
    decided_b: np.ndarray,
    permutations: int,
    seed: int,
) -> tuple[np.ndarray, float]:
    """Two-sided p-values, per class and on macro F1, of "A and B score alike": each
    permutation swaps the two models' decisions on a random half of the images (whole images,
    so the classes of one image stay together). p = (1 + #{|d*| >= |d|}) / (1 + permutations),
    exact under the null, so a difference is declared in at most alpha of identical pairs."""
    n = len(y)
    rng = np.random.default_rng(seed)
    swap = rng.integers(0, 2, size=(permutations, n)).astype(float)
    y_f, a, b = y.astype(float), decided_a.astype(float), decided_b.astype(float)
    tp_a, tp_b = (y_f * a).sum(0), (y_f * b).sum(0)
    fp_a, fp_b = ((1 - y_f) * a).sum(0), ((1 - y_f) * b).sum(0)
    positives = y_f.sum(0)
    d_tp, d_fp = swap @ (y_f * (b - a)), swap @ ((1 - y_f) * (b - a))

    def f1(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(positives > 0, 2 * tp / (tp + fp + positives), np.nan)

    observed = f1(tp_a, fp_a) - f1(tp_b, fp_b)
    perm_a, perm_b = f1(tp_a + d_tp, fp_a + d_fp), f1(tp_b - d_tp, fp_b - d_fp)
    diffs = perm_a - perm_b
    eps = 1e-12  # ties count as at least as extreme
    with np.errstate(invalid="ignore"):
        hits = (np.abs(diffs) >= np.abs(observed) - eps).sum(0)
        p = np.where(np.isnan(observed), np.nan, (1 + hits) / (1 + permutations))
        macro_obs = macro(f1(tp_a, fp_a)) - macro(f1(tp_b, fp_b))
        macro_hits = (np.abs(macro(perm_a) - macro(perm_b)) >= abs(macro_obs) - eps).sum()
    return p, float((1 + macro_hits) / (1 + permutations))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error) of the defined p-values; NaN stays."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


def compare_pair(
    y: np.ndarray,
    decided_a: np.ndarray,
    decided_b: np.ndarray,
    weights: np.ndarray,
    permutations: int,
    seed: int,
    level: float = 0.95,
) -> PairedTest:
    """Everything the report says about A against B on the same images."""
    ones = np.ones((1, len(y)))
    f1_a, f1_b = f1_from_weights(ones, y, decided_a), f1_from_weights(ones, y, decided_b)
    p, macro_p = paired_permutation(y, decided_a, decided_b, permutations, seed)
    fixed = ~np.isnan(f1_a[0])
    boot_a = f1_from_weights(weights, y, decided_a, f1_a[0])
    boot_b = f1_from_weights(weights, y, decided_b, f1_b[0])
    boot = macro(boot_a) - macro(boot_b)
    tail = 100 * (1 - level) / 2
    with _quiet():
        low, high = np.nanpercentile(boot, [tail, 100 - tail])
        se = np.nanstd(f1_from_weights(weights, y, decided_a) - f1_from_weights(
            weights, y, decided_b), axis=0, ddof=1)  # fmt: skip
    macro_diff = float((macro(f1_a) - macro(f1_b))[0])
    diff = f1_a[0] - f1_b[0]
    return PairedTest(
        diff, p, holm(p), macro_diff, macro_p, float(low), float(high),
        np.where(fixed, se, np.nan), float(np.std(boot, ddof=1)),
    )  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """numpy's "All-NaN slice" warning for a class absent from every resample: expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield

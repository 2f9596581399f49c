"""Per-class and macro F1 over resampled images: intervals, paired permutation tests between two
models scored on the same images, Holm's correction, and the difference a test would detect.

F1 is computed from counts, so a resample is a vector of image weights (how often each image is
drawn, or which model's decisions an image takes) and thousands of resamples are a few matrix
products. A class with no positive image is undefined (NaN) and left out of the macro average,
as in `taco.metrics.evaluate`.

Which interval for which number, each chosen by simulation (`taco.reports.simulate`, README
"How sure is a number?"):

- one class's F1: an exact interval. Among the images that are a true positive, a false
  positive or a false negative (n = TP + FP + FN), each is a true positive with probability
  J = F1 / (2 - F1), independently, so a Clopper-Pearson interval of J from (TP, n), mapped back
  by F1 = 2J / (1 + J), covers the population F1 at least 95% of the time at any support, and it
  never collapses to zero width (the percentile bootstrap did below 10 positives: a class with one
  positive image is either found or not in every resample);
- macro F1: the percentile bootstrap of the report's own statistic, the mean over the classes a
  resample has a positive of: a rare class leaves a resample's average as it would leave a new
  test set's. Keeping the class set fixed in every resample (pinning a class a resample lacks to
  its full-data F1) removed that variability and covered 0.85 to 0.93.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def f1_from_weights(weights: np.ndarray, y: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """Per-class F1 for each row of image weights (R x N) -> (R x C); NaN without positives."""
    y, decided = y.astype(float), decided.astype(float)
    tp = weights @ (y * decided)
    fp = weights @ ((1 - y) * decided)
    positives = weights @ y
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (tp + fp + positives)
    return np.where(positives > 0, f1, np.nan)


def exact_f1_interval(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a `level` interval of the population F1 that covers at least `level` at any
    support: Clopper-Pearson of J = TP / (TP + FP + FN), mapped by F1 = 2J / (1 + J) (NaN
    where the class has no positive)."""
    from scipy import stats

    tp, fp, fn = (np.asarray(x, float) for x in (tp, fp, fn))
    n, tail = tp + fp + fn, (1 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(tp > 0, stats.beta.ppf(tail, tp, n - tp + 1), 0.0)
        high = np.where(tp < n, stats.beta.ppf(1 - tail, tp + 1, n - tp), 1.0)
    defined = tp + fn > 0
    return (
        np.where(defined, 2 * low / (1 + low), np.nan),
        np.where(defined, 2 * high / (1 + high), np.nan),
    )


def counts(y: np.ndarray, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: true positives, false positives, false negatives."""
    y, decided = y.astype(bool), decided.astype(bool)
    return (y & decided).sum(0), (~y & decided).sum(0), (y & ~decided).sum(0)


def macro(f1: np.ndarray) -> np.ndarray:
    """Mean over the defined classes of each row (NaN where none is)."""
    defined = ~np.isnan(f1)
    total = np.where(defined, f1, 0).sum(-1)
    count = defined.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class Interval:
    """Per-class F1 with exact intervals, macro F1 with its percentile bootstrap interval."""

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


def macro_bootstrap(
    y: np.ndarray, decided: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """The `level` percentile bootstrap interval of macro F1 (each resample averages the classes
    it has a positive of)."""
    tail = 100 * (1 - level) / 2
    with np.errstate(invalid="ignore"), _quiet():
        boot = macro(f1_from_weights(weights, y, decided))
        low, high = np.nanpercentile(boot, [tail, 100 - tail])
    return float(low), float(high)


def f1_intervals(
    y: np.ndarray, decided: np.ndarray, weights: np.ndarray, level: float = 0.95
) -> Interval:
    """F1 per class with its exact interval, and macro F1 with its bootstrap interval."""
    point = f1_from_weights(np.ones((1, len(y))), y, decided)[0]
    low, high = exact_f1_interval(*counts(y, decided), level)
    macro_low, macro_high = macro_bootstrap(y, decided, weights, level)
    return Interval(point, low, high, float(macro(point)), macro_low, macro_high)


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

    def macro_detectable(self, alpha: float, tests: int, power: float = 0.8) -> float:
        """The macro F1 difference found with probability `power`, from the paired bootstrap's
        standard error (an average over many classes: its observed spread is the
        alternative's, and a normal test of it is close to the permutation test)."""
        from scipy import stats

        z = stats.norm.ppf(1 - alpha / (2 * max(tests, 1))) + stats.norm.ppf(power)
        return float(z * self.macro_se)


def exact_class_p(
    agree: tuple[int, int], only_a: tuple[int, int], only_b: tuple[int, int], positives: int
) -> float:
    """The paired permutation test of one class with every swap counted (its limit as the
    permutations grow): (positive, negative) images both models predict, only A predicts, only B
    predicts. A swap moves each image predicted by one model to the other with probability 1/2,
    so A's share of the positive ones is Binomial(k_p, 1/2), of the negative ones
    Binomial(k_n, 1/2); images both or neither predict never move."""
    k_p, k_n = only_a[0] + only_b[0], only_a[1] + only_b[1]
    x, y = np.arange(k_p + 1)[:, None], np.arange(k_n + 1)[None, :]

    def f1(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
        return 2 * tp / np.maximum(tp + fp + positives, 1)

    observed = f1(agree[0] + only_a[0], agree[1] + only_a[1]) - f1(
        agree[0] + only_b[0], agree[1] + only_b[1]
    )
    diff = f1(agree[0] + x, agree[1] + y) - f1(agree[0] + k_p - x, agree[1] + k_n - y)
    weight = _halves(int(k_p))[:, None] * _halves(int(k_n))[None, :]
    return float(weight[np.abs(diff) >= abs(observed) - 1e-12].sum())


@functools.lru_cache(maxsize=4096)
def _halves(k: int) -> np.ndarray:
    """Binomial(k, 1/2) probabilities of 0..k."""
    from scipy import stats

    return stats.binom.pmf(np.arange(k + 1), k, 0.5)


def power(
    base: float,
    gap: float,
    positives: int,
    images: int,
    level: float,
    trials: int,
    permutations: int = 0,
    seed: int = 0,
) -> float:
    """How often the class's permutation test at `level` finds a model at F1 `base + gap`
    better than one at `base` (independent models, each predicting as many images as there are
    positives: recall = precision = F1), by simulating their decisions' counts. With
    `permutations`, the test the report runs: each random swap lands beyond the observed
    difference with the exact test's p, so its count is Binomial(permutations, p), and p =
    (1 + count) / (1 + permutations); without, the exact test (every swap counted)."""
    rng = np.random.default_rng(seed)
    negatives = images - positives
    a, b = min(base + gap, 1.0), base
    fpr_a, fpr_b = (min((1 - f) * positives / max(negatives, 1), 1.0) for f in (a, b))
    both_p = rng.multinomial(positives, [a * b, a * (1 - b), (1 - a) * b, (1 - a) * (1 - b)],
                             size=trials)  # fmt: skip
    probs = [fpr_a * fpr_b, fpr_a * (1 - fpr_b), (1 - fpr_a) * fpr_b]
    both_n = rng.multinomial(negatives, [*probs, 1 - sum(probs)], size=trials)
    found = 0
    for p, n in zip(both_p, both_n, strict=True):
        tp_a, tp_b = p[0] + p[1], p[0] + p[2]
        if 2 * tp_a / (tp_a + n[0] + n[1] + positives) <= 2 * tp_b / max(
            tp_b + n[0] + n[2] + positives, 1
        ):
            continue  # A not ahead: not the finding asked for
        exact = exact_class_p((p[0], n[0]), (p[1], n[1]), (p[2], n[2]), positives)
        if permutations:
            exact = (1 + rng.binomial(permutations, min(exact, 1.0))) / (1 + permutations)
        found += exact < level
    return found / trials


def detectable_difference(
    base: float,
    positives: int,
    images: int,
    alpha: float,
    tests: int,
    permutations: int = 0,
    power_wanted: float = 0.8,
    trials: int = 1000,
) -> float:
    """The smallest gap d such that the class's permutation test at alpha / tests (Holm's
    strictest step), with `permutations` (0: exact), finds a model at F1 `base + d` better than
    one at `base` with probability `power_wanted`, simulated (`power`): a normal approximation
    from the observed pair's spread said 0.08 where both models sat near 0 (a model at 0.08
    varies more than one at 0), and too little at any support below about 100 positives, where
    the test's discreteness matters. NaN where no gap up to F1 1 is found that often (not
    estimable)."""
    if np.isnan(base) or positives <= 0 or images <= positives:
        return float("nan")
    level, top = alpha / max(tests, 1), 1.0 - base
    # a margin for this simulation's own error (SE 0.013 at 1,000 trials)
    wanted = power_wanted + 0.03

    def enough(gap: float) -> bool:
        found = power(base, gap, positives, images, level, trials, permutations)
        return found >= wanted

    if top <= 0 or not enough(top):
        return float("nan")
    low, high = 0.0, top
    while high - low > 0.005:
        middle = (low + high) / 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


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
    boot_a, boot_b = f1_from_weights(weights, y, decided_a), f1_from_weights(weights, y, decided_b)
    boot = macro(boot_a) - macro(boot_b)
    tail = 100 * (1 - level) / 2
    with _quiet():
        low, high = np.nanpercentile(boot, [tail, 100 - tail])
        se = np.nanstd(boot_a - boot_b, axis=0, ddof=1)
    macro_diff = float((macro(f1_a) - macro(f1_b))[0])
    diff = f1_a[0] - f1_b[0]
    return PairedTest(
        diff, p, holm(p), macro_diff, macro_p, float(low), float(high),
        np.where(np.isnan(diff), np.nan, se), float(np.nanstd(boot, ddof=1)),
    )  # fmt: skip


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """numpy's "All-NaN slice" warning for a class absent from every resample: expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield

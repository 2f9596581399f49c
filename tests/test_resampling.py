"""Intervals (exact per class, bootstrap for macro) and paired permutation tests of per-class
and macro F1 (taco.reports.resampling): the counts agree with scikit-learn, and the test is
calibrated: on models that are identical in distribution it declares a difference in about
alpha of repeated trials, and finds a clear one."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from taco.metrics import evaluate
from taco.reports.resampling import (
    bootstrap_weights,
    compare_pair,
    f1_from_weights,
    f1_intervals,
    holm,
    paired_permutation,
)

ALPHA = 0.05


def _labels(rng, images=150, classes=4, prevalence=0.3):
    return (rng.random((images, classes)) < prevalence).astype(int)


def _noisy(rng, y, flip):
    """Decisions that disagree with the labels on a `flip` share of entries."""
    return np.where(rng.random(y.shape) < flip, 1 - y, y)


def test_f1_from_counts_matches_scikit_learn_and_evaluate():
    rng = np.random.default_rng(0)
    y = _labels(rng, classes=6)
    y[:, 5] = 0  # a class without positives: undefined, out of the macro average
    decided = _noisy(rng, y, 0.2)
    f1 = f1_from_weights(np.ones((1, len(y))), y, decided)[0]
    expected = f1_score(y, decided, average=None, zero_division=0)
    assert np.allclose(f1[:5], expected[:5]) and np.isnan(f1[5])
    result = evaluate(y, decided.astype(float), 0.5, [str(i) for i in range(6)])
    assert float(np.nanmean(f1)) == pytest.approx(result.f1_macro)
    # a weight vector is a resample: weight 2 is the image drawn twice
    twice = np.concatenate([y, y[:10]]), np.concatenate([decided, decided[:10]])
    weights = np.ones((1, len(y)))
    weights[0, :10] = 2
    assert np.allclose(
        f1_from_weights(weights, y, decided)[0][:5], f1_score(*twice, average=None)[:5]
    )


def test_bootstrap_interval_is_seeded_and_holds_the_point():
    rng = np.random.default_rng(1)
    y = _labels(rng)
    decided = _noisy(rng, y, 0.2)
    first = f1_intervals(y, decided, bootstrap_weights(len(y), 500, seed=7))
    again = f1_intervals(y, decided, bootstrap_weights(len(y), 500, seed=7))
    assert np.array_equal(first.low, again.low) and first.macro_high == again.macro_high
    assert np.all(first.low <= first.f1) and np.all(first.f1 <= first.high)
    assert first.macro_low < first.macro < first.macro_high
    # a quarter of the images: a wider interval
    small = f1_intervals(y[:40], decided[:40], bootstrap_weights(40, 500, seed=7))
    assert small.macro_high - small.macro_low > first.macro_high - first.macro_low


def test_holm_adjusts_step_down_and_keeps_undefined():
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03]))
    assert np.allclose(adjusted[[0, 1, 3]], [0.03, 0.06, 0.06]) and np.isnan(adjusted[2])


def test_paired_permutation_test_is_calibrated_under_the_null_and_finds_a_clear_difference():
    rng = np.random.default_rng(2)
    trials, permutations = 200, 199
    macro_hits = family_hits = 0
    for trial in range(trials):  # two models identical in distribution
        y = _labels(rng)
        a, b = _noisy(rng, y, 0.25), _noisy(rng, y, 0.25)
        p, macro_p = paired_permutation(y, a, b, permutations, seed=trial)
        macro_hits += macro_p < ALPHA
        family_hits += bool(np.nanmin(holm(p)) < ALPHA)
    # about alpha of the trials (binomial sd 0.015 at 200 trials): 0.05 +- 3 sd
    assert 0.005 <= macro_hits / trials <= 0.10, macro_hits
    assert family_hits / trials <= 0.10, family_hits  # Holm keeps the family-wise rate
    found = 0
    for trial in range(50):  # one model clearly better
        y = _labels(rng)
        a, b = _noisy(rng, y, 0.05), _noisy(rng, y, 0.30)
        test = compare_pair(y, a, b, bootstrap_weights(len(y), 200, trial), permutations, trial)
        found += test.macro_p < ALPHA and test.macro_diff > 0 and test.macro_low > 0
        assert np.nanmax(test.p_holm) < 0.5
    assert found == 50

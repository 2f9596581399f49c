"""Simulations that check the report's statistics against the claims they carry, through the
project's own functions (`tests/test_reports.py` asserts them; `make bench-statistics` prints
the tables of README "How sure is a number?"):

- `coverage`: how often a 95% percentile-bootstrap interval of one class's F1 holds the
  population F1, by the class's positives;
- `recipe_trials`: type-I error and power of the corrected resampled t-test (and the plain t-test
  it replaces) on repeated 5-fold cross-validation of two nearest-centroid recipes on Gaussian
  data, where the null is "equal on average over data sets" (on any one data set one recipe's
  features happen to be better);
- `reproduce_trials`: how often `make reproduce`'s statistical mode passes a re-run from the
  same distribution, and fails a shifted model.
"""

from __future__ import annotations

import numpy as np


def coverage(
    positives: int, trials: int = 400, images: int = 400, recall: float = 0.8, seed: int = 0
) -> float:
    """Share of trials whose 95% bootstrap interval of the class's F1 holds its population F1
    (a class with `positives` expected positives among `images`, a model with this recall and a
    false-positive rate of 0.5%)."""
    from taco.reports.resampling import bootstrap_weights, f1_from_weights

    p, fpr = positives / images, 0.005
    tp, fp, fn = p * recall, (1 - p) * fpr, p * (1 - recall)
    truth = 2 * tp / (2 * tp + fp + fn)
    rng = np.random.default_rng(seed)
    weights = bootstrap_weights(images, 1000, seed)
    hits = used = 0
    for _ in range(trials):
        y = rng.random(images) < p
        if not y.any():
            continue
        decided = np.where(y, rng.random(images) < recall, rng.random(images) < fpr)
        f1 = f1_from_weights(weights, y[:, None], decided[:, None])[:, 0]
        low, high = np.nanpercentile(f1, [2.5, 97.5])
        hits += low <= truth <= high
        used += 1
    return hits / used


def recipe_trial(
    rng: np.random.Generator,
    features_b: int,
    images: int = 400,
    repetitions: int = 3,
    folds: int = 5,
) -> tuple[float, float, float]:
    """One data set, repeated k-fold of recipe A (nearest centroid on features 0-5) and B (on
    the next `features_b`; 6: as good as A on average): (mean F1 difference, corrected p,
    plain p)."""
    from taco.reports.repeated import corrected_t

    y = rng.random(images) < 0.4
    x = rng.normal(size=(images, 12)) + y[:, None] * 0.5
    recipes = (np.arange(6), np.arange(6, 6 + features_b))
    diffs = []
    for _ in range(repetitions):
        order = rng.permutation(images)
        for test in np.array_split(order, folds):
            train = np.setdiff1d(order, test)
            f1 = []
            for features in recipes:
                xt, yt = x[train][:, features], y[train]
                near = x[test][:, features]
                one, zero = xt[yt].mean(0), xt[~yt].mean(0)
                decided = ((near - one) ** 2).sum(1) < ((near - zero) ** 2).sum(1)
                tp = (decided & y[test]).sum()
                f1.append(2 * tp / max(decided.sum() + y[test].sum(), 1))
            diffs.append(f1[0] - f1[1])
    t = corrected_t(np.array(diffs), 1 / (folds - 1))
    return t.mean, t.p, t.p_naive


def recipe_trials(features_b: int, trials: int, seed: int = 0) -> dict[str, float]:
    """Rejection rates at alpha 0.05 over `trials` data sets, and the mean F1 difference."""
    rng = np.random.default_rng(seed)
    found = np.array([recipe_trial(rng, features_b) for _ in range(trials)])
    return {
        "difference": float(found[:, 0].mean()),
        "corrected": float((found[:, 1] < 0.05).mean()),
        "plain": float((found[:, 2] < 0.05).mean()),
    }


def reproduce_trials(
    shift_sd: float, trials: int, variants: int = 4, seeds: int = 5, seed: int = 0
) -> float:
    """Share of re-runs that `make reproduce`'s statistical mode passes: `variants` models'
    macro F1 over `seeds` jobs each, committed and new drawn from the same distribution (SD
    0.02), the first model's new runs shifted by `shift_sd` SDs."""
    from taco.reports.reproduce import Stated, checks, passed

    rng = np.random.default_rng(seed)
    sd, passes = 0.02, 0
    for _ in range(trials):
        committed, new = {}, {}
        for v in range(variants):
            old = rng.normal(0.4, sd, seeds)
            again = rng.normal(0.4 + (shift_sd * sd if v == 0 else 0.0), sd, seeds)
            m, s = float(old.mean()), float(old.std(ddof=1))
            committed["macro F1", f"m{v}"] = Stated(m, m, m, "", s, seeds)
            new["macro F1", f"m{v}"] = float(again.mean())
        found = checks(committed, lambda row, v, new=new: new[row, v], "statistical", seeds)
        passes += passed(found)
    return passes / trials


def pairs_trials(models: int, trials: int, permutations: int = 199, seed: int = 0) -> dict:
    """Share of trials in which the pairs table of `models` models identical in distribution
    shows at least one macro-F1 p-value below 0.05: raw, and Holm-adjusted across the pairs
    (what the table decides with)."""
    import itertools

    from taco.reports.resampling import holm, paired_permutation

    rng = np.random.default_rng(seed)
    raw = adjusted = 0
    for trial in range(trials):
        y = (rng.random((150, 4)) < 0.3).astype(int)
        decided = [np.where(rng.random(y.shape) < 0.25, 1 - y, y) for _ in range(models)]
        p = np.array([
            paired_permutation(y, decided[a], decided[b], permutations, trial)[1]
            for a, b in itertools.combinations(range(models), 2)
        ])  # fmt: skip
        raw += bool(p.min() < 0.05)
        adjusted += bool(holm(p).min() < 0.05)
    return {"raw": raw / trials, "holm": adjusted / trials}

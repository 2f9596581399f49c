"""Simulations that check the report's statistics against the claims they carry, through the
project's own functions (`tests/test_reports.py` asserts them; `make bench-statistics` prints
the tables of README "How sure is a number?"):

- `coverage`: how often a 95% interval of one class's F1 holds the population F1, by the
  class's positives: the exact interval the reports print, or the percentile bootstrap they
  printed before (zero-width at one positive in most trials);
- `macro_coverage`: the same for macro F1 on a cross-validation-like data set (`SUPPORTS`: the
  28 supports of `compare_models_cv`'s 800 images), the report's bootstrap against the old one
  that pinned the class set;
- `seed_coverage`: the seed tables' t-interval, cut to [0, 1], for seeds near 0 and mid-range;
- `power_check`: how often the permutation test finds the lead the report says it finds 4
  times in 5;
- `recipe_trials`: type-I error and power of the corrected resampled t-test (and the plain t-test
  it replaces) on repeated 5-fold cross-validation of two nearest-centroid recipes on Gaussian
  data, where the null is "equal on average over data sets" (on any one data set one recipe's
  features happen to be better);
- `reproduce_trials`: how often `make reproduce`'s statistical mode passes a re-run from the
  same distribution, and fails a shifted model; `reproduce_cv_trials` the same for a
  cross-validation, over the share of the folds' spread that is training noise;
- `pairs_trials`: the family rates of the pairs table with identical models.
"""

from __future__ import annotations

import itertools

import numpy as np

from taco.reports.repeated import corrected_t
from taco.reports.reproduce import Stated, checks, passed
from taco.reports.resampling import (
    bootstrap_weights,
    counts,
    detectable_difference,
    exact_f1_interval,
    f1_from_weights,
    holm,
    macro,
    macro_bootstrap,
    paired_permutation,
)
from taco.reports.seeds import t_interval

# compare_models_cv's class supports over its 800 images: a cross-validation-like data set
SUPPORTS = (209, 137, 126, 95, 83, 78, 75, 75, 74, 61, 51, 49, 43, 36, 33, 23, 20, 20, 20, 16, 14,
            11, 10, 8, 7, 7, 3, 1)  # fmt: skip
IMAGES = 800


def coverage(
    positives: int,
    trials: int = 400,
    images: int = 400,
    recall: float = 0.8,
    seed: int = 0,
    kind: str = "exact",
) -> float:
    """Share of trials whose 95% interval of the class's F1 holds its population F1 (a class
    with `positives` expected positives among `images`, a model with this recall and a
    false-positive rate of 0.5%); `kind`: "exact" (what the reports print) or "bootstrap"
    (the percentile bootstrap they printed before)."""
    p, fpr = positives / images, 0.005
    tp, fp, fn = p * recall, (1 - p) * fpr, p * (1 - recall)
    truth = 2 * tp / (2 * tp + fp + fn)
    rng = np.random.default_rng(seed)
    weights = bootstrap_weights(images, 1000, seed) if kind == "bootstrap" else None
    hits = used = 0
    for _ in range(trials):
        y = rng.random(images) < p
        if not y.any():
            continue
        decided = np.where(y, rng.random(images) < recall, rng.random(images) < fpr)
        if weights is None:
            low, high = (x[0] for x in exact_f1_interval(*counts(y[:, None], decided[:, None])))
        else:
            f1 = f1_from_weights(weights, y[:, None], decided[:, None])[:, 0]
            low, high = np.nanpercentile(f1, [2.5, 97.5])
        hits += low <= truth <= high
        used += 1
    return hits / used


def _population(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class of `SUPPORTS`: prevalence, and a model's recall and false-positive rate
    (recall from 0, a model that misses a class, to 0.9)."""
    prevalence = np.array(SUPPORTS) / IMAGES
    recall = rng.uniform(0.0, 0.9, len(SUPPORTS))
    fpr = rng.uniform(0.002, 0.05, len(SUPPORTS))
    return prevalence, recall, fpr


def _pinned_macro(weights: np.ndarray, y: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """The macro bootstrap reports printed before: a class a resample has no positive of keeps
    its full-data F1 there (the class set fixed)."""
    point = f1_from_weights(np.ones((1, len(y))), y, decided)[0]
    f1 = f1_from_weights(weights, y, decided)
    return macro(np.where(np.isnan(f1), point, f1))


def macro_coverage(trials: int = 400, seed: int = 0, kind: str = "report") -> float:
    """Share of trials whose 95% macro-F1 interval holds the population macro F1 over the
    classes the test set has a positive of, on `SUPPORTS` with a model drawn per seed; `kind`:
    "report" (`resampling.macro_bootstrap`) or "pinned" (the class set fixed, as before)."""
    rng = np.random.default_rng(seed)
    prevalence, recall, fpr = _population(rng)
    tp, fp, fn = prevalence * recall, (1 - prevalence) * fpr, prevalence * (1 - recall)
    truth = 2 * tp / (2 * tp + fp + fn)
    weights = bootstrap_weights(IMAGES, 1000, seed)
    hits = 0
    for _ in range(trials):
        y = rng.random((IMAGES, len(prevalence))) < prevalence
        decided = np.where(y, rng.random(y.shape) < recall, rng.random(y.shape) < fpr)
        if kind == "pinned":
            low, high = np.nanpercentile(_pinned_macro(weights, y, decided), [2.5, 97.5])
        else:
            low, high = macro_bootstrap(y, decided, weights)
        hits += low <= truth[y.any(0)].mean() <= high
    return hits / trials


def seed_coverage(kind: str, trials: int = 2000, seeds: int = 5, seed: int = 0) -> dict:
    """The seed tables' 95% t-interval over `seeds` jobs, cut to [0, 1]: how often it holds the
    jobs' population mean, and how often the uncut one left [0, 1]. `kind`: "mid" (F1 about
    0.40, SD 0.03) or "near 0" (a rare class: half the seeds score 0, the others 0.05-0.45)."""
    rng = np.random.default_rng(seed)
    if kind == "mid":
        draw, truth = (lambda: rng.normal(0.40, 0.03, seeds)), 0.40
    else:
        draw, truth = (
            (lambda: np.where(rng.random(seeds) < 0.5, 0, rng.uniform(0.05, 0.45, seeds))),
            0.125,
        )
    from scipy import stats

    hits = alike = outside = 0
    for _ in range(trials):
        values = draw()
        low, high = t_interval(values)
        if np.isnan(low):
            alike += 1
            continue
        hits += low <= truth <= high
        sem = values.std(ddof=1) / np.sqrt(seeds)
        outside += values.mean() - stats.t.ppf(0.975, seeds - 1) * sem < 0
    drawn = trials - alike
    return {
        "coverage": hits / max(drawn, 1),
        "alike": alike / trials,
        "uncut outside": outside / max(drawn, 1),
    }


def power_check(
    positives: int,
    base: float,
    trials: int = 200,
    tests: int = 23,
    alpha: float = 0.05,
    permutations: int = 9999,
    seed: int = 0,
) -> dict[str, float]:
    """The lead the report says the class's test finds 4 times in 5
    (`resampling.detectable_difference`), and how often `paired_permutation` (the report's test,
    with its permutations) finds it at alpha / tests: independent models at `base` and `base +
    lead`, each predicting as many images as the class has positives, on `IMAGES` images."""
    lead = detectable_difference(base, positives, IMAGES, alpha, tests, permutations)
    rng = np.random.default_rng(seed)
    negatives, found = IMAGES - positives, 0
    for trial in range(trials):
        y = np.zeros((IMAGES, 1), bool)
        y[rng.choice(IMAGES, positives, replace=False)] = True
        decided = [
            np.where(
                y, rng.random(y.shape) < f1, rng.random(y.shape) < (1 - f1) * positives / negatives
            )
            for f1 in (base + lead, base)
        ]
        p, _ = paired_permutation(y, decided[0], decided[1], permutations, trial)
        tp = [(d & y).sum() for d in decided]
        f1 = [2 * t / (d.sum() + positives) for t, d in zip(tp, decided, strict=True)]
        found += bool(p[0] < alpha / tests and f1[0] > f1[1])
    return {"lead": lead, "power": found / trials}


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


def pairs_trials(models: int, trials: int, permutations: int = 999, seed: int = 0) -> dict:
    """Family rates of the pairs table of `models` models identical in distribution (4 classes
    of about 45 positives in 150 images): the share of trials with at least one macro-F1
    p-value below 0.05 (raw, and Holm across the pairs: what the table decides with), and with
    at least one class counted "A better" or "B better" somewhere (Holm within each pair, as
    before, and across every (pair, class): `CrossValidation.adjust_classes`)."""
    rng = np.random.default_rng(seed)
    raw = adjusted = within = family = 0
    for trial in range(trials):
        y = (rng.random((150, 4)) < 0.3).astype(int)
        decided = [np.where(rng.random(y.shape) < 0.25, 1 - y, y) for _ in range(models)]
        tests = [
            paired_permutation(y, decided[a], decided[b], permutations, trial)
            for a, b in itertools.combinations(range(models), 2)
        ]
        p = np.array([t[1] for t in tests])
        raw += bool(p.min() < 0.05)
        adjusted += bool(holm(p).min() < 0.05)
        within += any(bool(np.nanmin(holm(t[0])) < 0.05) for t in tests)
        family += bool(np.nanmin(holm(np.concatenate([t[0] for t in tests]))) < 0.05)
    return {
        "raw": raw / trials,
        "holm": adjusted / trials,
        "classes within pairs": within / trials,
        "classes family": family / trials,
    }


def reproduce_cv_trials(
    training: float,
    shift_sd: float,
    trials: int,
    variants: int = 4,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Share of re-runs of a cross-validation that `make reproduce` passes: each variant's
    per-fold macro F1 is a fold effect (the fold's data, the same in a re-run) plus training
    noise (new in a re-run), their SDs split so the folds' total SD is 0.02 with `training`
    of it training noise; the first variant's re-run shifted by `shift_sd` of that SD. The
    committed number is the mean over the folds (pooled F1) with the folds' SD and count, as
    `comparison.csv` states it."""
    rng = np.random.default_rng(seed)
    sd = 0.02
    train_sd, data_sd = training * sd, np.sqrt(max(1 - training**2, 0.0)) * sd
    passes = 0
    for _ in range(trials):
        committed, new = {}, {}
        for v in range(variants):
            effect = rng.normal(0.4, data_sd, folds)
            old = effect + rng.normal(0, train_sd, folds)
            again = effect + rng.normal(0, train_sd, folds) + (shift_sd * sd if v == 0 else 0.0)
            m = float(old.mean())
            committed["macro F1", f"m{v}"] = Stated(m, m, m, "", float(old.std(ddof=1)), folds)
            new["macro F1", f"m{v}"] = float(again.mean())
        found = checks(committed, lambda row, v, new=new: new[row, v], "statistical", 0)
        passes += passed(found)
    return passes / trials

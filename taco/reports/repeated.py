"""Repeated cross-validation read back from MLflow (`experiment=compare_models_rcv`): this recipe
against that one on this kind of data. Each job's test F1 (per class and macro, as it logged
them) is one fold of one repetition; two variants are compared on the same (repetition, fold)
pairs by the corrected resampled t-test of Nadeau & Bengio (2003), as Bouckaert & Frank (2004)
use it for repeated k-fold: the folds' training sets overlap, so the per-fold differences are
correlated, and the variance of their mean is (1/J + n_test/n_train) * s^2, not s^2 / J.
A plain t-test on the J folds finds differences between identical recipes far more often than
alpha (`tests/test_repeated.py` measures both).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taco import tables
from taco.reports.cross_validation import TOO_FEW_TEXT, split_seed
from taco.reports.document import TWO_LEVELS_RECIPE
from taco.reports.floors import floor_mark
from taco.reports.resampling import holm
from taco.reports.runs import Sweep
from taco.reports.seeds import TOO_FEW

MACRO = "macro F1"


@dataclass(frozen=True)
class TTest:
    """The corrected resampled t-test of per-fold values (differences, or one recipe's F1)."""

    mean: float
    low: float  # 95% interval of the mean, with the corrected variance
    high: float
    t: float
    df: int
    p: float  # two-sided, corrected
    p_naive: float  # the plain t-test on the same folds (what the correction prevents)
    folds: int


def corrected_t(values: np.ndarray, test_train: float, level: float = 0.95) -> TTest:
    """Nadeau & Bengio's corrected resampled t-test of `values` (one per fold of repeated
    cross-validation, NaN left out) against 0; `test_train` = n_test / n_train of a fold
    (1 / (k - 1) for k-fold)."""
    from scipy import stats

    x = np.asarray(values, float)
    x = x[~np.isnan(x)]
    j = len(x)
    if j < 2:
        nan = float("nan")
        return TTest(float(x.mean()) if j else nan, nan, nan, nan, max(j - 1, 0), nan, nan, j)
    mean, var = float(x.mean()), float(x.var(ddof=1))
    se = math.sqrt((1 / j + test_train) * var)
    se_naive = math.sqrt(var / j)
    half = stats.t.ppf(0.5 + level / 2, j - 1) * se

    def p_of(error: float) -> float:
        if error == 0:
            return 1.0 if mean == 0 else 0.0
        return float(2 * stats.t.sf(abs(mean / error), j - 1))

    t = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    return TTest(mean, mean - half, mean + half, t, j - 1, p_of(se), p_of(se_naive), j)


@dataclass
class Repeated:
    """Per variant and row (class or macro F1), one test F1 per (repetition, fold)."""

    variants: list[str]
    classes: list[str]  # by mean test support per fold, most frequent first
    support: dict[str, float]  # mean test positives per fold
    keys: list[tuple[str, str]]  # (split seed, fold) every variant ran
    folds: int
    alpha: float = 0.05
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # variant -> row -> J
    floor: dict[str, np.ndarray] = field(default_factory=dict)  # row -> J (predict every class)

    @property
    def repetitions(self) -> int:
        return len({k[0] for k in self.keys})

    @property
    def test_train(self) -> float:
        return 1 / (self.folds - 1)

    def recipe(self, variant: str, row: str = MACRO) -> TTest:
        return corrected_t(self.values[variant][row], self.test_train)

    def pair(self, a: str, b: str, row: str = MACRO) -> TTest:
        return corrected_t(self.values[a][row] - self.values[b][row], self.test_train)

    def pairs(self) -> list[tuple[str, str]]:
        return list(itertools.combinations(self.variants, 2))

    def macro_p_holm(self) -> dict[tuple[str, str], float]:
        pairs = self.pairs()
        adjusted = holm(np.array([self.pair(a, b).p for a, b in pairs]))
        return dict(zip(pairs, adjusted.tolist(), strict=True))

    def too_few(self, row: str) -> bool:
        """Fewer than TOO_FEW positives in a repetition's test parts: not tested."""
        return row in self.support and self.support[row] * self.folds < TOO_FEW

    def tested(self) -> list[str]:
        return [c for c in self.classes if not self.too_few(c)]

    def class_p_holm(self, a: str, b: str) -> dict[str, float]:
        """Per tested class, the pair's corrected p Holm-adjusted across every (pair, tested
        class): the family of the per-class verdicts and the pairs table's class counts."""
        tested, pairs = self.tested(), self.pairs()
        p = np.array([self.pair(x, y, c).p for x, y in pairs for c in tested])
        adjusted = holm(p).reshape(len(pairs), len(tested)) if len(p) else p
        row = adjusted[pairs.index((a, b) if (a, b) in pairs else (b, a))] if len(p) else []
        return dict(zip(tested, np.asarray(row).tolist(), strict=True))

    def winner(self, row: str) -> str | None:
        """The recipe with the best mean that is significantly better than every other (macro:
        Holm across the pairs; a class: Holm across every pair and tested class)."""
        means = {v: self.recipe(v, row).mean for v in self.variants}
        if len(means) < 2 or any(np.isnan(m) for m in means.values()) or self.too_few(row):
            return None
        best = max(means, key=means.get)
        macro_p = self.macro_p_holm() if row == MACRO else None
        for other in self.variants:
            if other == best:
                continue
            key = (best, other) if (best, other) in self.pairs() else (other, best)
            p = macro_p[key] if macro_p is not None else self.class_p_holm(*key)[row]
            if not (means[best] > means[other] and p < self.alpha):
                return None
        return best


def repeated(sweep: Sweep, alpha: float = 0.05) -> Repeated | None:
    """The sweep's jobs as repetitions x folds, or None when it does not repeat a
    cross-validation (one split seed)."""

    def key(run: Any) -> tuple[str, str]:
        return split_seed(run), run.data.params.get("dataset.fold", "")

    by_variant = {v: {key(r): r for r in runs} for v, runs in sweep.runs.items()}
    common = set.intersection(*(set(k) for k in by_variant.values()))
    keys = sorted(common, key=lambda k: (len(k[0]), k[0], len(k[1]), k[1]))
    if len({k[0] for k in keys}) < 2:
        return None
    first = by_variant[sweep.variants[0]]
    support: dict[str, list[float]] = {}
    for k in keys:
        for name, value in first[k].data.metrics.items():
            if name.startswith("test/support/"):
                support.setdefault(name.removeprefix("test/support/"), []).append(value)
    mean_support = {c: float(np.mean(v)) for c, v in support.items()}
    classes = sorted(mean_support, key=lambda c: (-mean_support[c], c))
    folds = int(first[keys[0]].data.params.get("dataset.folds", 5))
    result = Repeated(sweep.variants, classes, mean_support, keys, folds, alpha)
    for variant, runs in by_variant.items():
        rows: dict[str, np.ndarray] = {}
        for row in [*classes, MACRO]:
            name = "test/f1_macro" if row == MACRO else f"test/f1/{row}"
            rows[row] = np.array([runs[k].data.metrics.get(name, np.nan) for k in keys])
        result.values[variant] = rows
    result.floor[MACRO] = np.array(
        [first[k].data.metrics.get("test/floor/f1_macro_all", np.nan) for k in keys]
    )
    return result


# ---------------------------------------------------------------------- outputs
def recipes_markdown(r: Repeated) -> str:
    """Each recipe's mean per-fold macro F1 with its corrected 95% interval, and the floor."""
    head = ["recipe", "folds", "macro F1 mean [corrected 95% interval]", "floor: every class"]
    floor = float(np.nanmean(r.floor[MACRO]))
    rows = []
    for v in r.variants:
        t = r.recipe(v)
        mark = floor_mark(t.low, t.high, floor)
        rows.append([v, t.folds, f"{t.mean:.3f} [{t.low:.3f}, {t.high:.3f}]{mark}", f"{floor:.3f}"])
    return tables.markdown(head, rows)


def recipes_csv(r: Repeated) -> str:
    """The recipe-level numbers `make reproduce` checks on a repeated cross-validation: per row
    and recipe, the mean over the folds, their SD and count, and the corrected interval."""
    head = ["class"]
    for v in r.variants:
        head += [f"{v} mean", f"{v} std", f"{v} n", f"{v} low", f"{v} high"]
    rows = []
    for row in [MACRO, *r.classes]:
        cells = [row]
        for v in r.variants:
            values = r.values[v][row]
            values = values[~np.isnan(values)]
            t = r.recipe(v, row)
            std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            cells += [tables.num(t.mean), tables.num(std), str(len(values))]
            cells += [tables.num(t.low), tables.num(t.high)]
        rows.append(cells)
    return tables.csv(head, rows)


def pairs_markdown(r: Repeated) -> str:
    """Each pair: mean per-fold macro-F1 difference, corrected interval, t, p (and the plain
    t-test's p beside it), Holm across the pairs, and classes each recipe wins (Holm across the
    classes)."""
    macro_p = r.macro_p_holm()
    head = [
        "A vs B", "macro F1 A - B [corrected 95% interval]", "t (df)", "p corrected",
        f"p (Holm, {len(macro_p)} pairs)", "p plain t-test (not valid)",
        "classes A better", "classes B better",
    ]  # fmt: skip
    rows = []
    for a, b in r.pairs():
        t = r.pair(a, b)
        per_class = r.class_p_holm(a, b)
        diffs = {c: r.pair(a, b, c).mean for c in per_class}
        better_a = sum(per_class[c] < r.alpha and diffs[c] > 0 for c in per_class)
        better_b = sum(per_class[c] < r.alpha and diffs[c] < 0 for c in per_class)
        rows.append([
            f"{a} vs {b}", f"{t.mean:+.3f} [{t.low:+.3f}, {t.high:+.3f}]", f"{t.t:.2f} ({t.df})",
            tables.p_value(t.p), tables.p_value(macro_p[(a, b)]), tables.p_value(t.p_naive),
            better_a, better_b,
        ])  # fmt: skip
    return tables.markdown(head, rows)


def classes_markdown(r: Repeated) -> str:
    """Per class: mean per-fold F1 of each recipe, and the significantly best recipe (Holm
    across the classes), by its mean lead."""
    head = ["class", "positives per fold", *r.variants, "significantly best (lead)"]
    rows = []
    for row in [*r.classes, MACRO]:
        means = [r.recipe(v, row).mean for v in r.variants]
        winner = r.winner(row)
        verdict = TOO_FEW_TEXT if r.too_few(row) else "no detectable difference"
        if winner:
            lead = r.recipe(winner, row).mean - max(
                m for v, m in zip(r.variants, means, strict=True) if v != winner
            )
            verdict = f"{winner} (+{lead:.2f})"
        cells = ["n/a" if np.isnan(m) else f"{m:.2f}" for m in means]
        support = f"{r.support[row]:.1f}" if row in r.support else ""
        rows.append([row if row != MACRO else f"**{row}**", support, *cells, verdict])
    return tables.markdown(head, rows, text_last=True)


def report_section(r: Repeated) -> str:
    """The recipe-level section of a repeated cross-validation's REPORT.md."""
    j = len(r.keys)
    return "\n".join(
        [
            "## This recipe on this data",
            "",
            TWO_LEVELS_RECIPE,
            "",
            f"{r.repetitions} repetitions x {r.folds} folds: {j} folds every recipe ran, each "
            f"scored on its own test part (n_test / n_train = 1/{r.folds - 1}); t has {j - 1} "
            f"degrees of freedom; alpha {r.alpha}. †: the interval reaches the floor (predict "
            "every class, the mean over the folds); ↓: it lies wholly below it, worse than "
            "predicting every class.",
            "",
            recipes_markdown(r),
            "Pairs (A - B on the same folds; the plain t-test's p is shown only to say what "
            "the correction changes):",
            "",
            pairs_markdown(r),
            "Per class (mean F1 over the folds with a positive; a class is decided with Holm "
            "across every pair and class with enough positives, the family the pairs table "
            "counts in too; fewer than 10 in a repetition: too few to tell, not tested):",
            "",
            classes_markdown(r),
        ]
    )

"""One cross-validation read back from MLflow (`taco-compare` on a sweep over `dataset.fold`):
these trained models on these images. Each model's out-of-fold predictions
(`predictions/test.npz` of its fold jobs) are pooled so every image counts once; per-class and
macro F1 get bootstrap intervals over images, and every two models a paired permutation test on
the same images, Holm-corrected across classes (and the macro p-values across the pairs). A
model wins a class only where it is significantly better than every other model, on a class
with at least `TOO_FEW` positives. The trained models are held fixed: a claim about the recipe
that trained them needs repeated cross-validation (`taco.reports.repeated`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taco import plots, tables
from taco.errors import DataError
from taco.metrics import sanitize
from taco.reports.document import MACRO_F1, TWO_LEVELS_MODELS, threshold_note
from taco.reports.floors import EVERY, PREVALENCE, Floors, floor_mark, floors
from taco.reports.resampling import (
    Interval,
    PairedTest,
    bootstrap_weights,
    detectable_difference,
    f1_intervals,
    holm,
)
from taco.reports.resampling import compare_pair as paired
from taco.reports.runs import load_predictions, overrides, rare_thresholds
from taco.reports.seeds import TOO_FEW

log = logging.getLogger(__name__)

NO_DIFFERENCE = "no detectable difference"
TOO_FEW_TEXT = f"too few to tell (< {TOO_FEW} positives)"


@dataclass(frozen=True)
class Settings:
    """How intervals and tests are computed (taco-compare's --resamples, --permutations, --alpha,
    --stats-seed)."""

    resamples: int = 2000
    permutations: int = 9999
    alpha: float = 0.05
    seed: int = 0


@dataclass
class Pooled:
    """One model's predictions over all its folds, rows sorted by image id."""

    image_ids: np.ndarray
    y_true: np.ndarray
    decided: np.ndarray  # each fold's scores at that fold's thresholds
    class_names: list[str]
    folds: int

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        where = np.searchsorted(self.image_ids, ids)
        return self.y_true[where], self.decided[where]


def is_cross_validation(runs: list[Any]) -> bool:
    return any("dataset.fold" in overrides(r) for r in runs)


def split_seed(run: Any) -> str:
    """The job's fold split (its logged `dataset.split_seed`): one repetition of a repeated
    cross-validation."""
    return run.data.params.get("dataset.split_seed", "")


def repetitions(runs: list[Any]) -> dict[str, list[Any]]:
    """A variant's fold jobs by split seed, in order."""
    out: dict[str, list[Any]] = {}
    for run in runs:
        out.setdefault(split_seed(run), []).append(run)
    return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))


def pool_runs(client: Any, runs: list[Any], variant: str) -> Pooled:
    """Concatenate the fold jobs' logged test predictions; each image must appear once."""
    parts = [load_predictions(client, run) for run in runs]
    names = [str(n) for n in parts[0]["class_names"]]
    if any([str(n) for n in p["class_names"]] != names for p in parts):
        raise DataError(f"{variant}: the fold jobs have different classes; re-run the sweep")
    ids = np.concatenate([p["image_ids"] for p in parts])
    if len(np.unique(ids)) != len(ids):
        raise DataError(
            f"{variant}: an image is held out by more than one job (several seeds per fold?); "
            "pool one job per fold: sweep one seed, or compare with --parent per seed"
        )
    decided = np.concatenate([p["scores"] >= p["thresholds"] for p in parts]).astype(np.uint8)
    y = np.concatenate([p["y_true"] for p in parts]).astype(np.uint8)
    order = np.argsort(ids)
    return Pooled(ids[order], y[order], decided[order], names, len(parts))


@dataclass
class CrossValidation:
    """Pooled per-class F1 with intervals per model, and paired tests per pair of models."""

    variants: list[str]
    classes: list[str]  # by pooled support, most frequent first
    support: dict[str, int]
    images: int  # images every model scored (the tests' sample)
    folds: int
    settings: Settings
    intervals: dict[str, Interval] = field(default_factory=dict)
    tests: dict[tuple[str, str], PairedTest] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)  # class -> column
    # each pair's macro-F1 p-value, Holm-adjusted across the pairs (the family of the pairs table)
    macro_p_holm: dict[tuple[str, str], float] = field(default_factory=dict)
    # each pair's per-class p-values, Holm-adjusted across every (pair, tested class): the family
    # of the per-class verdicts and the pairs table's class counts
    class_p: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    floors: Floors | None = None
    repetition: str = ""  # the split seed pooled, when the sweep repeats the cross-validation
    repetitions: int = 1
    rare: dict[str, int] = field(default_factory=dict)  # class -> fewest validation positives
    # variant -> row -> each fold job's own test F1 (the spread `make reproduce` allows for)
    fold_values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def fold_spread(self, row: str, variant: str) -> tuple[float, int]:
        """The SD of the row's F1 over the variant's fold jobs, and how many there are: an
        upper bound of the training noise a re-run's pooled F1 carries (it also holds the
        folds' data differences, which a re-run on the same folds does not change)."""
        values = self.fold_values.get(variant, {}).get(row, np.array([]))
        values = values[~np.isnan(values)]
        return (float(values.std(ddof=1)) if len(values) > 1 else float("nan")), len(values)

    def pair_macro_p(self, a: str, b: str) -> float:
        return self.macro_p_holm[(a, b) if (a, b) in self.macro_p_holm else (b, a)]

    def floor_warnings(self) -> list[str]:
        """Where too few permutations let nothing reach alpha after Holm's correction: the
        smallest p is 1 / (permutations + 1), times the number of tests in the family."""
        s, warnings = self.settings, []
        smallest = 1 / (s.permutations + 1)
        families = {"(pair, class) tests": self.class_tests(), "pairs": len(self.tests)}
        for family, m in families.items():
            if m and m * smallest > s.alpha:
                need = int(np.ceil(m / s.alpha)) - 1
                warnings.append(
                    f"with {m} {family} and --permutations {s.permutations}, the smallest "
                    f"Holm-adjusted p is {m * smallest:.3f} > alpha {s.alpha}: no difference "
                    f"between {family} can be significant; use --permutations {need} or more"
                )
        return warnings

    def tested(self) -> np.ndarray:
        """Per class column: it has at least TOO_FEW positives (tested; the others are too few
        to tell)."""
        names = sorted(self.index, key=self.index.get)
        return np.array([self.support.get(c, 0) >= TOO_FEW for c in names])

    def class_tests(self) -> int:
        """The size of the per-class family: every pair times every tested class."""
        return len(self.tests) * int(self.tested().sum())

    def adjust_classes(self) -> None:
        """Holm across every (pair, tested class) p-value; NaN for the classes not tested."""
        tested = self.tested()
        pairs = list(self.tests)
        p = np.concatenate([np.where(tested, self.tests[k].p, np.nan) for k in pairs])
        adjusted = holm(p).reshape(len(pairs), -1) if pairs else p
        self.class_p = {k: adjusted[i] for i, k in enumerate(pairs)}

    def class_p_of(self, a: str, b: str) -> np.ndarray:
        if not self.class_p:
            self.adjust_classes()
        return self.class_p[(a, b) if (a, b) in self.class_p else (b, a)]

    def f1(self, row: str, variant: str) -> float:
        interval = self.intervals[variant]
        return interval.macro if row == "macro F1" else float(interval.f1[self.index[row]])

    def bounds(self, row: str, variant: str) -> tuple[float, float]:
        i = self.intervals[variant]
        if row == "macro F1":
            return i.macro_low, i.macro_high
        return float(i.low[self.index[row]]), float(i.high[self.index[row]])

    def test(self, a: str, b: str) -> PairedTest:
        """The test of a pair, in either order (its p-values do not depend on the order)."""
        return self.tests[a, b] if (a, b) in self.tests else self.tests[b, a]

    def too_few(self, row: str) -> bool:
        return row in self.support and 0 < self.support[row] < TOO_FEW

    def winner(self, row: str) -> str | None:
        """The model with the best F1 of the row if it is significantly better than every other
        (per class: Holm across the classes; macro F1: Holm across the pairs), on a class with
        at least TOO_FEW positives."""
        values = {v: self.f1(row, v) for v in self.variants}
        if len(values) < 2 or any(np.isnan(x) for x in values.values()) or self.too_few(row):
            return None
        best = max(values, key=values.get)
        for other in self.variants:
            if other == best:
                continue
            p = (
                self.pair_macro_p(best, other)
                if row == "macro F1"
                else self.class_p_of(best, other)[self.index[row]]
            )
            if not (values[best] > values[other] and p < self.settings.alpha):
                return None
        return best

    def runner_up(self, row: str) -> tuple[str, str] | None:
        """The two best models of the row (the pair a "no difference" verdict is about)."""
        values = {v: self.f1(row, v) for v in self.variants}
        if len(values) < 2 or any(np.isnan(x) for x in values.values()):
            return None
        first, second = sorted(values, key=values.get, reverse=True)[:2]
        return first, second

    def detectable(self, row: str) -> float:
        """The smallest lead over the row's runner-up that the row's test finds 4 times in 5
        (80% power) at Holm's strictest step of its family: for a class, simulated under that
        alternative (`resampling.detectable_difference`); for macro F1, from the pair's paired
        bootstrap. NaN: no lead up to F1 1 is found that often."""
        pair = self.runner_up(row)
        if pair is None:
            return float("nan")
        alpha = self.settings.alpha
        if row == "macro F1":
            return self.test(*pair).macro_detectable(alpha, len(self.tests))
        base = self.f1(row, pair[1])
        positives, tests = self.support[row], self.class_tests()
        shuffles = self.settings.permutations
        return detectable_difference(base, positives, self.images, alpha, tests, shuffles)

    def verdict(self, row: str) -> str:
        if row in self.support and self.support[row] == 0:
            return "n/a"
        if self.too_few(row):
            return TOO_FEW_TEXT
        winner = self.winner(row)
        if winner:
            return f"{winner} (+{self.effect(row, winner):.2f})"
        gap = self.detectable(row)
        if np.isnan(gap):
            return f"{NO_DIFFERENCE} (no lead found 4 times in 5: not estimable)"
        return f"{NO_DIFFERENCE} (80% power at +{gap:.2f})"

    def effect(self, row: str, winner: str) -> float:
        """The winner's F1 lead over the runner-up (its smallest margin)."""
        others = [self.f1(row, v) for v in self.variants if v != winner]
        return self.f1(row, winner) - max(others)

    def floor_mark(self, row: str, variant: str) -> str:
        """ " †" where the interval reaches the better floor, " ↓" where it lies wholly below."""
        if self.floors is None:
            return ""
        return floor_mark(*self.bounds(row, variant), self.floors.best(row))

    @property
    def rows(self) -> list[str]:
        return [*self.classes, "macro F1"]

    def significant_classes(self) -> int:
        return sum(self.winner(c) is not None for c in self.classes if self.support[c] > 0)


def cross_validate(client: Any, runs: dict[str, list[Any]], settings: Settings) -> CrossValidation:
    """Pool each model's folds (the first repetition's, when the sweep repeats the
    cross-validation), then intervals on each model's images and tests on the images every
    model scored."""
    reps = {variant: repetitions(r) for variant, r in runs.items()}
    first_split = next(iter(next(iter(reps.values()))))
    pooled = {
        variant: pool_runs(client, by_split.get(first_split, []), variant)
        for variant, by_split in reps.items()
    }
    first = next(iter(pooled.values()))
    if any(p.class_names != first.class_names for p in pooled.values()):
        raise DataError(
            "the models of this cross-validation score different classes (another "
            "dataset.label_level or class map?): compare sweeps that share their classes"
        )
    common = first.image_ids
    for p in pooled.values():
        common = np.intersect1d(common, p.image_ids)
    if len(common) == 0:
        raise DataError("the models of this sweep scored no image in common")
    y, _ = first.rows(common)
    support = y.sum(0).astype(int)
    names = first.class_names
    cv = CrossValidation(
        variants=list(pooled),
        classes=sorted(names, key=lambda c: (-support[names.index(c)], c)),
        support={c: int(support[i]) for i, c in enumerate(names)},
        images=len(common),
        folds=max(p.folds for p in pooled.values()),
        settings=settings,
        index={c: i for i, c in enumerate(names)},
        floors=floors(y, names),
        repetition=first_split if max(len(r) for r in reps.values()) > 1 else "",
        repetitions=max(len(r) for r in reps.values()),
    )

    held = [r for by_split in reps.values() for r in by_split.get(first_split, [])]
    cv.rare = rare_thresholds(client, held)
    cv.fold_values = {
        v: fold_metrics(by_split.get(first_split, []), names) for v, by_split in reps.items()
    }
    weights = bootstrap_weights(len(common), settings.resamples, settings.seed)
    decided = {v: p.rows(common)[1] for v, p in pooled.items()}
    for v in cv.variants:
        cv.intervals[v] = f1_intervals(y, decided[v], weights)
    for a, b in itertools.combinations(cv.variants, 2):
        cv.tests[a, b] = paired(
            y, decided[a], decided[b], weights, settings.permutations, settings.seed
        )
    adjusted = holm(np.array([t.macro_p for t in cv.tests.values()]))
    cv.macro_p_holm = dict(zip(cv.tests, adjusted.tolist(), strict=True))
    cv.adjust_classes()
    for warning in cv.floor_warnings():
        log.warning("taco-compare: %s", warning)
    return cv


def fold_metrics(runs: list[Any], names: list[str]) -> dict[str, np.ndarray]:
    """Each fold job's logged test F1, per class (its metric name sanitized) and macro."""
    keys = {"macro F1": "test/f1_macro"} | {c: f"test/f1/{sanitize(c)}" for c in names}
    return {
        row: np.array([r.data.metrics.get(key, np.nan) for r in runs], float)
        for row, key in keys.items()
    }


# ---------------------------------------------------------------------- outputs
def _cell(cv: CrossValidation, row: str, variant: str) -> str:
    value = cv.f1(row, variant)
    if np.isnan(value):
        return "n/a"
    low, high = cv.bounds(row, variant)
    text = f"{value:.2f} [{low:.2f}, {high:.2f}]" + cv.floor_mark(row, variant)
    return f"**{text}**" if cv.winner(row) == variant else text


def _floor_cells(cv: CrossValidation, row: str) -> list[str]:
    if cv.floors is None:
        return []
    values = (cv.floors.f1(kind, row) for kind in (EVERY, PREVALENCE))
    return ["" if np.isnan(v) else f"{v:.2f}" for v in values]


def markdown(cv: CrossValidation) -> str:
    """Model x class table: pooled F1 [95% interval] beside the floors, the significant winner
    in bold, and a column naming it (with its lead), or saying there is no detectable
    difference (with the difference the test would have found), or too few to tell (with one
    model, nothing is compared: no such column)."""
    compared = len(cv.variants) > 1
    floors = [EVERY, PREVALENCE] if cv.floors is not None else []
    head = ["class", "support", *cv.variants, *floors]
    head += ["significantly best (lead)"] if compared else []
    rows = []
    for row in cv.rows:
        support = str(cv.support[row]) if row in cv.support else ""
        label = tables.class_label(row, cv.rare) if row in cv.support else f"**{row}**"
        cells = [_cell(cv, row, v) for v in cv.variants]
        verdict = [cv.verdict(row)] if compared else []
        rows.append([label, support, *cells, *_floor_cells(cv, row), *verdict])
    return tables.markdown(head, rows, text_last=compared)


def pairs_markdown(cv: CrossValidation) -> str:
    """Each pair: the macro F1 difference with its paired bootstrap interval and permutation
    p-value (raw, and Holm-adjusted across the pairs), and how many classes each model wins
    significantly (Holm across every pair and tested class), ties, and classes too rare to
    tell."""
    alpha = cv.settings.alpha
    head = [
        "A vs B", "macro F1 A - B [95% interval]", "p", f"p (Holm, {len(cv.tests)} pairs)",
        "classes A better", "classes B better", NO_DIFFERENCE, TOO_FEW_TEXT,
    ]  # fmt: skip
    rows = []
    rare = ~cv.tested()
    for (a, b), t in cv.tests.items():
        p = cv.class_p_of(a, b)
        defined = ~np.isnan(t.p) & ~rare
        better_a = int(np.sum(defined & (p < alpha) & (t.diff > 0)))
        better_b = int(np.sum(defined & (p < alpha) & (t.diff < 0)))
        same = int(defined.sum()) - better_a - better_b
        rows.append([
            f"{a} vs {b}", f"{t.macro_diff:+.3f} [{t.macro_low:+.3f}, {t.macro_high:+.3f}]",
            tables.p_value(t.macro_p), tables.p_value(cv.pair_macro_p(a, b)),
            better_a, better_b, same, int(np.sum(~np.isnan(t.p) & rare)),
        ])  # fmt: skip
    return tables.markdown(head, rows)


def csv_text(cv: CrossValidation) -> str:
    """Per row and model: pooled F1, its interval, and the SD of the fold jobs' own F1 with
    their count (what `make reproduce` allows a re-run's pooled F1 to move by)."""
    head = ["class", "support"]
    for v in cv.variants:
        head += [f"{v} f1", f"{v} low", f"{v} high", f"{v} fold std", f"{v} folds"]
    floors = [EVERY, PREVALENCE] if cv.floors is not None else []
    rows = []
    for row in cv.rows:
        cells = [row, str(cv.support.get(row, ""))]
        for v in cv.variants:
            low, high = cv.bounds(row, v)
            std, folds = cv.fold_spread(row, v)
            cells += [tables.num(cv.f1(row, v)), tables.num(low), tables.num(high)]
            cells += [tables.num(std), str(folds)]
        cells += [tables.num(cv.floors.f1(f, row)) for f in floors]
        rows.append([*cells, cv.winner(row) or ""])
    return tables.csv([*head, *floors, "significantly best"], rows)


def table(cv: CrossValidation) -> dict[str, list]:
    """Columns for `MlflowClient.log_table`: class, support, each model's F1, low and high."""
    head = ["class", "support"]
    for v in cv.variants:
        head += [f"{v} f1", f"{v} low", f"{v} high"]
    rows = []
    for row in cv.rows:
        cells: list[Any] = [row, cv.support.get(row)]
        for v in cv.variants:
            cells += [tables.none(x) for x in (cv.f1(row, v), *cv.bounds(row, v))]
        rows.append([*cells, cv.winner(row)])
    return tables.mlflow_columns([*head, "significantly best"], rows)


def figure(cv: CrossValidation) -> Any:
    """Per-class F1 with its 95% interval as an error bar, one colour per model."""
    rows = [r for r in cv.rows if r not in cv.support or cv.support[r] > 0]
    labels = [f"{r} ({cv.support[r]})" if r in cv.support else r for r in rows]
    return plots.f1_intervals(  # (not resampling's f1_intervals: the numbers, not the plot)
        rows, labels, cv.variants, lambda r, v: (cv.f1(r, v), *cv.bounds(r, v)),
        f"F1 over {cv.images} images, {cv.folds}-fold out-of-fold, 95% bootstrap interval",
        floor=cv.floors.best if cv.floors is not None else None,
    )  # fmt: skip


def write_outputs(cv: CrossValidation, folder: Path) -> None:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.md").write_text(markdown(cv) + "\n" + pairs_markdown(cv))
    (folder / "comparison.csv").write_text(csv_text(cv))
    fig = figure(cv)
    fig.savefig(folder / "f1_intervals.png", dpi=110)
    plt.close(fig)


def log_to_parent(client: Any, cv: CrossValidation, parent_id: str, folder: Path) -> None:
    for name in ("comparison.md", "comparison.csv", "f1_intervals.png"):
        client.log_artifact(parent_id, str(folder / name), "comparison")
    client.log_table(parent_id, table(cv), "comparison/table.json")
    for v in cv.variants:
        i = cv.intervals[v]
        for name, value in (("", i.macro), ("_low", i.macro_low), ("_high", i.macro_high)):
            client.log_metric(parent_id, f"compare/f1_macro{name}/{sanitize(v)}", value)
    client.log_metric(
        parent_id, "compare/classes_with_significant_winner", cv.significant_classes()
    )


def report_body(cv: CrossValidation) -> str:
    """What REPORT.md says between its header and the per-variant lines."""
    s = cv.settings
    defined = sum(cv.support[c] > 0 for c in cv.classes)
    rare = sum(cv.too_few(c) for c in cv.classes)
    repeated = (
        f" This sweep repeats the cross-validation {cv.repetitions} times; this level pools "
        f"the repetition with split seed {cv.repetition} (the next section uses them all)."
        if cv.repetitions > 1
        else ""
    )
    return "\n".join(
        [
            "## These trained models on these images",
            "",
            TWO_LEVELS_MODELS + repeated,
            "",
            f"Every image is scored once per model, by the job of the {cv.folds}-fold "
            f"cross-validation that held it out ({cv.images} images; thresholds and early "
            "stopping tuned on a validation part of the other folds). F1 is pooled over all "
            "images. [low, high]: for a class, an exact 95% interval (Clopper-Pearson on "
            "TP / (TP + FP + FN), mapped to F1), which covers at least 95% at any support; for "
            f"macro F1, a 95% bootstrap interval over images ({s.resamples} resamples, seed "
            f"{s.seed}; each resample averages the classes it has a positive of, as the macro "
            f"of a new test set would). {MACRO_F1} Two models are compared by a paired "
            f"permutation test on the same images ({s.permutations} permutations), per class "
            "with Holm's correction across every pair and tested class (the family of the "
            f"verdicts and of the pairs table's class counts), at alpha {s.alpha}. **Bold** and "
            "*significantly best*: the model is significantly better than every other model, "
            "by the F1 lead in brackets. No detectable difference: the test found none; the "
            "figure beside it is the lead over the runner-up the test would find 4 times in 5 "
            "(80% power, simulated for a model that much better than the runner-up's F1, at "
            "Holm's strictest step), so a large figure means the test could not tell, not that "
            "the models are alike; not estimable: not even a perfect model would be found that "
            f"often. Classes with fewer than {TOO_FEW} positives are *too few to tell*: no "
            f"test is claimed ({rare} such classes here), and their intervals are wide. n/a: "
            "no positive image. †: the interval reaches the better floor, so the model is not "
            "shown to beat chance there; ↓: it lies wholly below it (worse than predicting the "
            "class on every image). Two intervals may overlap while the paired test still "
            "finds a difference: pairing removes what the images' difficulty adds to both "
            "models' spread." + threshold_note(cv.rare),
            "",
            (
                f"**Classes with a significant winner: {cv.significant_classes()} of {defined}.** "
                f"Macro F1: {cv.verdict('macro F1')}."
                if len(cv.variants) > 1
                else f"**One model ({cv.variants[0]}): nothing to compare it with**; its pooled "
                "F1 and intervals follow."
            ),
            "",
            *[line for w in cv.floor_warnings() for line in (f"**Warning:** {w}.", "")],
            markdown(cv),
            "![F1 by class with intervals](f1_intervals.png)",
            "",
            "Paired tests (A - B on the same images; classes counted after Holm's correction "
            f"across all {cv.class_tests()} (pair, tested class) tests; the macro-F1 p-values "
            "Holm-adjusted across the pairs, the family the significantly-best macro F1 is "
            "decided in):",
            "",
            pairs_markdown(cv),
        ]
    )

"""A cross-validation sweep read back from MLflow (`taco-compare` on a sweep over `dataset.fold`):
each model's out-of-fold predictions (`predictions/test.npz` of its fold jobs) pooled so every
image counts once, per-class and macro F1 with bootstrap intervals over images, and paired
permutation tests between every two models on the same images, Holm-corrected across classes.
A model wins a class only where it is significantly better than every other model.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import DataError
from taco.resampling import (
    Interval,
    PairedTest,
    bootstrap_interval,
    bootstrap_weights,
    holm,
)
from taco.resampling import compare_pair as paired
from taco.tracking.compare import _csv, _none, _num

log = logging.getLogger(__name__)

PREDICTIONS = "predictions/test.npz"
NO_DIFFERENCE = "no detectable difference"


@dataclass(frozen=True)
class Settings:
    """How intervals and tests are computed (taco-compare's --resamples, --permutations, --alpha,
    --stats-seed)."""

    resamples: int = 2000
    permutations: int = 2000
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
    from taco.tracking.compare import _overrides

    return any("dataset.fold" in _overrides(r) for r in runs)


def pool_runs(client: Any, runs: list[Any], variant: str) -> Pooled:
    """Concatenate the fold jobs' logged test predictions; each image must appear once."""
    parts = [_load(client, run) for run in runs]
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


def _load(client: Any, run: Any) -> dict[str, np.ndarray]:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file each
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, PREDICTIONS, tmp)
        except Exception:
            raise DataError(
                f"run {run.info.run_id} has no {PREDICTIONS} (logged by callbacks.log_predictions "
                "since this release): re-run its job"
            ) from None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


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

    def pair_macro_p(self, a: str, b: str) -> float:
        return self.macro_p_holm[(a, b) if (a, b) in self.macro_p_holm else (b, a)]

    def floor_warnings(self) -> list[str]:
        """Where too few permutations let nothing reach alpha after Holm's correction: the
        smallest p is 1 / (permutations + 1), times the number of tests in the family."""
        s, warnings = self.settings, []
        smallest = 1 / (s.permutations + 1)
        families = {
            "classes": max((int((~np.isnan(t.p)).sum()) for t in self.tests.values()), default=0),
            "pairs": len(self.tests),
        }
        for family, m in families.items():
            if m and m * smallest > s.alpha:
                need = int(np.ceil(m / s.alpha)) - 1
                warnings.append(
                    f"with {m} {family} tested and --permutations {s.permutations}, the smallest "
                    f"Holm-adjusted p is {m * smallest:.3f} > alpha {s.alpha}: no difference "
                    f"between {family} can be significant; use --permutations {need} or more"
                )
        return warnings

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

    def winner(self, row: str) -> str | None:
        """The model with the best F1 of the row if it is significantly better than every other
        (per class: Holm across the classes; macro F1: Holm across the pairs)."""
        values = {v: self.f1(row, v) for v in self.variants}
        if len(values) < 2 or any(np.isnan(x) for x in values.values()):
            return None
        best = max(values, key=values.get)
        for other in self.variants:
            if other == best:
                continue
            test = self.test(best, other)
            p = (
                self.pair_macro_p(best, other)
                if row == "macro F1"
                else test.p_holm[self.index[row]]
            )
            if not (values[best] > values[other] and p < self.settings.alpha):
                return None
        return best

    @property
    def rows(self) -> list[str]:
        return [*self.classes, "macro F1"]

    def significant_classes(self) -> int:
        return sum(self.winner(c) is not None for c in self.classes if self.support[c] > 0)


def cross_validate(client: Any, runs: dict[str, list[Any]], settings: Settings) -> CrossValidation:
    """Pool each model's folds, then intervals on each model's images and tests on the images
    every model scored."""
    pooled = {variant: pool_runs(client, r, variant) for variant, r in runs.items()}
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
    )
    weights = bootstrap_weights(len(common), settings.resamples, settings.seed)
    decided = {v: p.rows(common)[1] for v, p in pooled.items()}
    for v in cv.variants:
        cv.intervals[v] = bootstrap_interval(y, decided[v], weights)
    for a, b in itertools.combinations(cv.variants, 2):
        cv.tests[a, b] = paired(
            y, decided[a], decided[b], weights, settings.permutations, settings.seed
        )
    adjusted = holm(np.array([t.macro_p for t in cv.tests.values()]))
    cv.macro_p_holm = dict(zip(cv.tests, adjusted.tolist(), strict=True))
    for warning in cv.floor_warnings():
        log.warning("taco-compare: %s", warning)
    return cv


# ---------------------------------------------------------------------- outputs
def _cell(cv: CrossValidation, row: str, variant: str) -> str:
    value = cv.f1(row, variant)
    if np.isnan(value):
        return "n/a"
    low, high = cv.bounds(row, variant)
    text = f"{value:.2f} [{low:.2f}, {high:.2f}]"
    return f"**{text}**" if cv.winner(row) == variant else text


def markdown(cv: CrossValidation) -> str:
    """Model x class table: pooled F1 [95% interval], the significant winner in bold, and a
    column naming it or saying there is no detectable difference (with one model, nothing is
    compared: no such column)."""
    compared = len(cv.variants) > 1
    head = ["class", "support", *cv.variants, *(["significantly best"] if compared else [])]
    rule = "|---|---:|" + "---:|" * len(cv.variants) + ("---|" if compared else "")
    lines = ["| " + " | ".join(head) + " |", rule]
    for row in cv.rows:
        support = str(cv.support[row]) if row in cv.support else ""
        label = row if row in cv.support else f"**{row}**"
        defined = row not in cv.support or cv.support[row] > 0
        verdict = (cv.winner(row) or NO_DIFFERENCE) if defined else "n/a"
        cells = [_cell(cv, row, v) for v in cv.variants]
        lines.append(
            "| " + " | ".join([label, support, *cells, *([verdict] if compared else [])]) + " |"
        )
    return "\n".join(lines) + "\n"


def pairs_markdown(cv: CrossValidation) -> str:
    """Each pair: the macro F1 difference with its paired bootstrap interval and permutation
    p-value (raw, and Holm-adjusted across the pairs), and how many classes each model wins
    significantly (Holm across the classes)."""
    alpha = cv.settings.alpha
    lines = [
        f"| A vs B | macro F1 A - B [95% interval] | p | p (Holm, {len(cv.tests)} pairs) "
        "| classes A better | classes B better | no detectable difference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (a, b), t in cv.tests.items():
        defined = ~np.isnan(t.p_holm)
        better_a = int(np.sum(defined & (t.p_holm < alpha) & (t.diff > 0)))
        better_b = int(np.sum(defined & (t.p_holm < alpha) & (t.diff < 0)))
        same = int(defined.sum()) - better_a - better_b
        lines.append(
            f"| {a} vs {b} | {t.macro_diff:+.3f} [{t.macro_low:+.3f}, {t.macro_high:+.3f}] "
            f"| {_p(t.macro_p)} | {_p(cv.pair_macro_p(a, b))} | {better_a} | {better_b} | {same} |"
        )
    return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 0.0001 else "< 0.0001"


def csv_text(cv: CrossValidation) -> str:
    cols = ["class", "support"]
    for v in cv.variants:
        cols += [f"{v} f1", f"{v} low", f"{v} high"]
    out = [",".join(cols + ["significantly best"])]
    for row in cv.rows:
        cells = [row, str(cv.support.get(row, ""))]
        for v in cv.variants:
            low, high = cv.bounds(row, v)
            cells += [_num(cv.f1(row, v)), _num(low), _num(high)]
        cells.append(cv.winner(row) or "")
        out.append(",".join(_csv(c) for c in cells))
    return "\n".join(out) + "\n"


def table(cv: CrossValidation) -> dict[str, list]:
    """Columns for `MlflowClient.log_table`: class, support, each model's F1, low and high."""
    columns: dict[str, list] = {"class": cv.rows}
    columns["support"] = [cv.support.get(r) for r in cv.rows]
    for v in cv.variants:
        columns[f"{v} f1"] = [_none(cv.f1(r, v)) for r in cv.rows]
        columns[f"{v} low"] = [_none(cv.bounds(r, v)[0]) for r in cv.rows]
        columns[f"{v} high"] = [_none(cv.bounds(r, v)[1]) for r in cv.rows]
    columns["significantly best"] = [cv.winner(r) for r in cv.rows]
    return columns


def figure(cv: CrossValidation) -> Any:
    """Per-class F1 with its 95% interval as an error bar, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in cv.rows if r not in cv.support or cv.support[r] > 0]
    fig, ax = plt.subplots(figsize=(8, 0.36 * len(rows) + 1.6), layout="constrained")
    for i in range(0, len(rows), 2):  # bands: which bars belong to which class
        ax.axhspan(i - 0.5, i + 0.5, color="0.94", zorder=0)
    offsets = np.linspace(-0.3, 0.3, len(cv.variants)) if len(cv.variants) > 1 else [0.0]
    for offset, variant in zip(offsets, cv.variants, strict=True):
        y = np.arange(len(rows)) + offset
        f1 = np.array([cv.f1(r, variant) for r in rows])
        low, high = np.array([cv.bounds(r, variant) for r in rows]).T
        err = np.vstack([f1 - low, high - f1])
        ax.errorbar(f1, y, xerr=err, fmt="o", markersize=3, capsize=2, label=variant)
    labels = [f"{r} ({cv.support[r]})" if r in cv.support else r for r in rows]
    ax.set_yticks(np.arange(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(
        f"F1 over {cv.images} images, {cv.folds}-fold out-of-fold, 95% bootstrap interval"
    )
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("F1 by class (support in brackets)", fontsize=9)
    return fig


def write_outputs(cv: CrossValidation, folder: Path) -> None:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.md").write_text(markdown(cv) + "\n" + pairs_markdown(cv))
    (folder / "comparison.csv").write_text(csv_text(cv))
    fig = figure(cv)
    fig.savefig(folder / "f1_intervals.png", dpi=110)
    plt.close(fig)


def log_to_parent(client: Any, cv: CrossValidation, parent_id: str, folder: Path) -> None:
    from taco.metrics import sanitize

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
    return "\n".join(
        [
            f"Every image is scored once per model, by the job of the {cv.folds}-fold "
            f"cross-validation that held it out ({cv.images} images; thresholds and early "
            "stopping tuned on a validation part of the other folds). F1 is pooled over all "
            f"images; [low, high] is a 95% bootstrap interval over images ({s.resamples} "
            f"resamples, seed {s.seed}). Two models are compared by a paired permutation test on "
            f"the same images ({s.permutations} permutations), per class with Holm's correction "
            f"across classes, at alpha {s.alpha}. **Bold** and *significantly best*: the model "
            "is significantly better than every other model; elsewhere there is no detectable "
            "difference (n/a: no positive image). Two intervals may overlap while the paired "
            "test still finds a difference: pairing removes what the images' difficulty adds to "
            "both models' spread.",
            "",
            (
                f"**Classes with a significant winner: {cv.significant_classes()} of {defined}.** "
                f"Macro F1: {cv.winner('macro F1') or NO_DIFFERENCE}."
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
            "across the classes; the macro-F1 p-values also Holm-adjusted across the pairs, the "
            "family the significantly-best macro F1 is decided in):",
            "",
            pairs_markdown(cv),
        ]
    )

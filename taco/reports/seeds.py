"""A seed study's table: per class and on macro and micro F1, each variant's mean over its jobs
(training seeds, and split seeds where they vary) with a 95% t-interval and n, beside the floors.

A variant is bold only where its interval clears every other variant's, the class has at least
`TOO_FEW` test positives, and the jobs ran on more than one test split: on one split the seeds'
spread leaves out the split's own sampling noise, so a lead clear of the seeds there is shown in
italics, as a lead on that split and not a win.

The t-interval is cut to [0, 1], where an F1 lies: the population mean lies in the cut interval
whenever it lies in the uncut one, so the coverage is the t-interval's (`simulate.seed_coverage`
measures it). Jobs that all score the same give no spread to build an interval on: the cell says
so instead of printing a zero-width one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taco import tables
from taco.errors import DataError
from taco.metrics import HEADLINE, sanitize
from taco.plots import f1_heatmap
from taco.reports.document import MACRO_F1, TWO_LEVELS_SEEDS, threshold_note
from taco.reports.floors import EVERY, PREVALENCE, Floors, at_floor, floor_mark, floors, mean_floors
from taco.reports.runs import Sweep, load_predictions, rare_thresholds

SUMMARY_ROWS = tuple((label, f"test/{name}") for name, label in HEADLINE.items())
# fewer test positives than this: a bootstrap interval covers less than it says (0.90 at 5
# positives, 0.86 at 3, against 0.93 to 0.94 from 10 up: README "How sure is a number?"), and
# a win is not claimed
TOO_FEW = 10
LEVEL = 0.95


@dataclass
class Comparison(Sweep):
    """The sweep's per-class and summary test F1 by variant, one value per job."""

    classes: list[str] = field(default_factory=list)
    support: dict[str, float] = field(default_factory=dict)
    # values[row][variant] -> one value per job (row: class name or summary label)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    floors: Floors | None = None
    rare: dict[str, int] = field(default_factory=dict)  # class -> fewest validation positives

    def add(self, row: str, variant: str, value: float) -> None:
        self.values.setdefault(row, {}).setdefault(variant, []).append(value)

    @property
    def rows(self) -> list[str]:
        return [*self.classes, *(label for label, _ in SUMMARY_ROWS)]

    def _values(self, row: str, variant: str) -> np.ndarray:
        return np.asarray(self.values.get(row, {}).get(variant, []), float)

    def n(self, row: str, variant: str) -> int:
        return len(self._values(row, variant))

    def mean(self, row: str, variant: str) -> float:
        vals = self._values(row, variant)
        return float(vals.mean()) if len(vals) else float("nan")

    def std(self, row: str, variant: str) -> float:
        vals = self._values(row, variant)
        return float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")

    def interval(self, row: str, variant: str) -> tuple[float, float]:
        """The mean's 95% t-interval over the jobs (NaN with fewer than two)."""
        return t_interval(self._values(row, variant), LEVEL)

    def too_few(self, row: str) -> bool:
        return row in self.support and self.support[row] < TOO_FEW

    def splits(self) -> int:
        """How many test splits the jobs ran on (their logged `dataset.split_seed`s)."""
        seeds = {
            getattr(getattr(run, "data", None), "params", {}).get("dataset.split_seed", "")
            for runs in self.runs.values()
            for run in runs
        }
        return max(len(seeds), 1)

    def alike(self, row: str, variant: str) -> bool:
        """Two or more jobs, all with the same value: no spread to build an interval on."""
        return self.n(row, variant) > 1 and self.std(row, variant) == 0

    def best(self, row: str) -> set[str]:
        """The variants with the row's top mean; none when every variant ties (or only one)."""
        means = {v: self.mean(row, v) for v in self.variants}
        top = max((m for m in means.values() if not np.isnan(m)), default=None)
        best = {v for v, m in means.items() if top is not None and np.isclose(m, top)}
        return set() if len(best) == len(self.variants) else best

    def within_noise(self, row: str) -> bool:
        """The row's single best variant is not clear of the others: its t-interval overlaps
        another's (or, with one job each, nothing says how far apart they are), or the class
        has fewer than TOO_FEW test positives."""
        best = self.best(row)
        if len(best) != 1:
            return False
        if self.too_few(row) or self.seeds() < 2:
            return True
        (top,) = best
        low = self.interval(row, top)[0]
        others = [v for v in self.variants if v != top and not np.isnan(self.mean(row, v))]
        return any(not (self.interval(row, v)[1] < low) for v in others)

    def floor_mark(self, row: str, variant: str) -> str:
        """ " †" where the variant's interval (or its value, without one) reaches the row's better
        floor, " ↓" where it lies wholly below it."""
        if self.floors is None:
            return ""
        low, high = self.interval(row, variant)
        if np.isnan(low):  # no interval: the value may reach the floor, not lie "wholly" below
            return " †" if at_floor(self.mean(row, variant), self.floors.best(row)) else ""
        return floor_mark(low, high, self.floors.best(row))

    def cell(self, row: str, variant: str) -> str:
        m = self.mean(row, variant)
        if np.isnan(m):
            return "n/a"
        low, high = self.interval(row, variant)
        if self.alike(row, variant):
            text = f"{m:.3f} (all {self.n(row, variant)} alike)"
        else:
            text = f"{m:.3f}" if np.isnan(low) else f"{m:.3f} [{low:.3f}, {high:.3f}]"
        text += self.floor_mark(row, variant)
        if variant not in self.best(row):
            return text
        if self.within_noise(row):
            return f"{text} ≈"
        return f"**{text}**" if self.splits() > 1 else f"*{text}*"

    # ------------------------------------------------------------------ tables
    def markdown(self) -> str:
        floors = [EVERY, PREVALENCE] if self.floors is not None else []
        head = ["class", "support", *self.variants, *floors]
        rows = []
        for row in self.rows:
            support = tables.support(self.support[row]) if row in self.support else ""
            label = f"**{row}**" if row not in self.classes else tables.class_label(row, self.rare)
            floor_cells = [_floor(self.floors, f, row) for f in floors]
            rows.append([label, support, *(self.cell(row, v) for v in self.variants), *floor_cells])
        if len(self.variants) > 1:
            wins, noisy = defaultdict(int), defaultdict(int)
            for row in self.classes:
                best = self.best(row)
                for v in best if len(best) == 1 else ():
                    (noisy if self.within_noise(row) else wins)[v] += 1
            blank = [""] * len(floors)
            won = "classes won (alone)" if self.splits() > 1 else "classes clear on this split"
            rows.append([won, "", *(wins[v] for v in self.variants), *blank])
            within = [noisy[v] for v in self.variants]
            rows.append(["best but within noise (≈)", "", *within, *blank])
        return tables.markdown(head, rows)

    def csv(self) -> str:
        head = ["class", "support"]
        for v in self.variants:
            head += [f"{v} mean", f"{v} std", f"{v} n", f"{v} low", f"{v} high"]
        floors = [EVERY, PREVALENCE] if self.floors is not None else []
        rows = []
        for row in self.rows:
            cells = [row, tables.support(self.support[row]) if row in self.support else ""]
            for v in self.variants:
                low, high = self.interval(row, v)
                cells += [tables.num(self.mean(row, v)), tables.num(self.std(row, v))]
                cells += [str(self.n(row, v)), tables.num(low), tables.num(high)]
            cells += [tables.num(self.floors.f1(f, row)) for f in floors]
            rows.append(cells)
        return tables.csv(head + floors, rows)

    def table(self) -> dict[str, list]:
        """The model x class table as columns for `MlflowClient.log_table`: class, support,
        then each variant's mean, std and interval."""
        head, rows = ["class", "support"], []
        for v in self.variants:
            head += [f"{v} mean", f"{v} std", f"{v} low", f"{v} high"]
        for row in self.rows:
            cells = [row, self.support.get(row)]
            for v in self.variants:
                low, high = self.interval(row, v)
                cells += [tables.none(x) for x in (self.mean(row, v), self.std(row, v), low, high)]
            rows.append(cells)
        return tables.mlflow_columns(head, rows)

    def heatmap(self) -> Any:
        rows = self.rows
        labels = [
            f"{r} ({tables.support(self.support[r])})" if r in self.support else r for r in rows
        ]
        data = np.array([[self.mean(r, v) for v in self.variants] for r in rows])
        best = [self.best(r) for r in rows]
        seeds = f", mean of {self.seeds()} jobs" if self.seeds() > 1 else ""
        title = f"test F1 by class (support in brackets; * best){seeds}"
        return f1_heatmap(data, labels, self.variants, best, len(self.classes), title)


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Mean ± t(n-1) * s / sqrt(n), cut to [0, 1]: where the mean of the jobs' population lies
    (NaN with fewer than two jobs, or jobs all alike)."""
    from scipy import stats

    values = np.asarray(values, float)
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean, sem = values.mean(), values.std(ddof=1) / np.sqrt(n)
    if sem == 0:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sem
    return float(max(mean - half, 0.0)), float(min(mean + half, 1.0))


def _floor(floors: Floors | None, kind: str, row: str) -> str:
    value = floors.f1(kind, row) if floors is not None else float("nan")
    return "" if np.isnan(value) or row == "micro F1" else f"{value:.3f}"


def comparison(sweep: Sweep, client: Any = None) -> Comparison:
    """The sweep's test metrics as a seed table; with a client, the floors from the first
    variant's logged test predictions (all variants share the splits)."""
    table = Comparison(sweep.parent, sweep.variants, sweep.runs, sweep.unfinished)
    support: dict[str, list[float]] = defaultdict(list)
    for variant, runs in sweep.runs.items():  # in job order: the seeds in sweep order
        for run in runs:
            metrics = run.data.metrics
            for key, value in metrics.items():
                match = re.fullmatch(r"test/(f1|support)/(.+)", key)
                if match and match.group(1) == "f1":
                    table.add(match.group(2), variant, value)
                elif match and variant == sweep.variants[0]:
                    support[match.group(2)].append(value)
            for label, key in SUMMARY_ROWS:
                if key in metrics:
                    table.add(label, variant, metrics[key])
    table.support = {c: float(np.mean(v)) for c, v in support.items()}
    table.classes = sorted(table.support, key=lambda c: (-table.support[c], c))
    if client is not None:
        table.floors = logged_floors(client, sweep.runs[sweep.variants[0]])
        rare = rare_thresholds(client, sweep.jobs())
        table.rare = {sanitize(c): n for c, n in rare.items()}  # as the metrics name them
    return table


def logged_floors(client: Any, runs: list[Any]) -> Floors | None:
    """The floors of the test sets of `runs` (from their predictions/test.npz), averaged."""
    parts = []
    for run in runs:
        try:
            logged = load_predictions(client, run)
        except DataError:  # a run from before predictions were logged: no floors
            return None
        names = [sanitize(str(c)) for c in logged["class_names"]]  # as the metrics name them
        parts.append(floors(logged["y_true"], names))
    return mean_floors(parts) if parts else None


# ---------------------------------------------------------------------- outputs
def log_to_parent(client: Any, table: Comparison, run_id: str, folder: Path) -> None:
    """The table (as files, and as an MLflow table the UI shows), the heatmap, and a few summary
    metrics per model (`compare/<summary>/<model>`) on the sweep's parent run `run_id`."""
    for name in ("comparison.md", "comparison.csv", "f1_heatmap.png"):
        client.log_artifact(run_id, str(folder / name), "comparison")
    client.log_table(run_id, table.table(), "comparison/table.json")
    for variant in table.variants:
        for label, key in SUMMARY_ROWS:
            value = table.mean(label, variant)
            if not np.isnan(value):
                name = key.removeprefix("test/")
                client.log_metric(run_id, f"compare/{name}/{sanitize(variant)}", value)


def write_outputs(table: Comparison, folder: Path) -> None:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.md").write_text(table.markdown())
    (folder / "comparison.csv").write_text(table.csv())
    figure = table.heatmap()
    figure.savefig(folder / "f1_heatmap.png", dpi=110)
    plt.close(figure)


def report_body(table: Comparison) -> str:
    """What REPORT.md says between its header and the per-variant lines."""
    n = table.seeds()
    return "\n".join(
        [
            TWO_LEVELS_SEEDS,
            "",
            "Thresholds are tuned on the validation split; F1 is on the test split; support is "
            "the number of test images with the class (a mean where the splits differ). n/a: "
            "the class has no positive test image, so its F1 is undefined (a model that "
            f"predicts no positive where there are some scores 0, not n/a). {MACRO_F1}"
            + (
                f" Cells are the mean over {n} jobs with its 95% t-interval (t with n - 1 "
                "degrees of freedom: where the mean over all seeds would lie), cut to [0, 1] "
                "where an F1 lies; all n alike: the jobs agree, so no interval can be drawn. "
                + (
                    "**Bold**: the best mean, its interval clear of every other variant's, on "
                    f"a class with at least {TOO_FEW} test positives"
                    if table.splits() > 1
                    else "*Italics*: the best mean, its interval clear of every other "
                    f"variant's, on a class with at least {TOO_FEW} test positives; a lead on "
                    "this one test split, not a win: the seeds' spread leaves out the split's "
                    "own sampling noise, so no cell is bold (a study that also varies "
                    "`dataset.split_seed`, or a cross-validation, can make one)"
                )
                + f"; ≈: the best mean but not clear of the others (intervals overlap, or "
                f"fewer than {TOO_FEW} positives: too few to tell)."
                if n > 1
                else " The best variant of the row, one job each: no interval says how far "
                "apart they are, so ≈ marks every best."
            )
            + " †: the interval (or the value) reaches the better of the two floors: not shown "
            "to beat chance; ↓: it lies wholly below the better floor, worse than predicting "
            "the class on every image (or at random). Floors: F1 of predicting the class on "
            "every test image, and of predicting it at random at its test prevalence."
            + threshold_note(table.rare),
            "",
            table.markdown(),
            "![test F1 heatmap](f1_heatmap.png)",
            "",
        ]
    )

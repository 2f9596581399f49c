"""A sweep's runs, read back from MLflow, as a model x class table (`taco-compare`, `make report`).

Rows are classes (most frequent first) with their test support, then macro and micro F1; columns
are the sweep's variants (what its jobs' overrides vary, seed aside). Jobs that differ only by
seed are pooled: mean +- std. The best variant of each row is in bold. Written as Markdown and
CSV with a heatmap PNG, logged to the sweep's parent run, and optionally kept as a study's
REPORT.md.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import DataError
from taco.metrics import HEADLINE, sanitize

log = logging.getLogger("taco.compare")

# what varies between the jobs of one variant: training seed, test split, cross-validation fold
POOLED = {"seed", "dataset.split_seed", "dataset.fold"}

SUMMARY_ROWS = tuple((label, f"test/{name}") for name, label in HEADLINE.items())


@dataclass
class Comparison:
    parent: Any
    variants: list[str]
    classes: list[str]
    support: dict[str, float]
    # values[row][variant] -> per-seed values (row: class name or summary label)
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    runs: dict[str, list[Any]] = field(default_factory=dict)
    unfinished: list[Any] = field(default_factory=list)

    def add(self, row: str, variant: str, value: float) -> None:
        self.values.setdefault(row, {}).setdefault(variant, []).append(value)

    @property
    def rows(self) -> list[str]:
        return [*self.classes, *(label for label, _ in SUMMARY_ROWS)]

    def mean(self, row: str, variant: str) -> float:
        vals = self.values.get(row, {}).get(variant, [])
        return float(np.mean(vals)) if vals else float("nan")

    def std(self, row: str, variant: str) -> float:
        vals = self.values.get(row, {}).get(variant, [])
        return float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")

    def best(self, row: str) -> set[str]:
        """The variants with the row's top mean; none when every variant ties (or only one)."""
        means = {v: self.mean(row, v) for v in self.variants}
        top = max((m for m in means.values() if not np.isnan(m)), default=None)
        best = {v for v, m in means.items() if top is not None and np.isclose(m, top)}
        return set() if len(best) == len(self.variants) else best

    def within_noise(self, row: str) -> bool:
        """The row's single best variant, with several seeds, has a mean ± std interval that
        overlaps another variant's: the win may be seed noise, not the model."""
        best = self.best(row)
        if len(best) != 1 or self.seeds() < 2:
            return False
        (top,) = best
        low = self.mean(row, top) - np.nan_to_num(self.std(row, top))
        others = [v for v in self.variants if v != top and not np.isnan(self.mean(row, v))]
        return any(self.mean(row, v) + np.nan_to_num(self.std(row, v)) >= low for v in others)

    def seeds(self) -> int:
        return max((len(r) for r in self.runs.values()), default=0)

    def cell(self, row: str, variant: str) -> str:
        m, s = self.mean(row, variant), self.std(row, variant)
        if np.isnan(m):
            return "n/a"
        text = f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}"
        if variant not in self.best(row):
            return text
        return f"{text} ≈" if self.within_noise(row) else f"**{text}**"

    def markdown(self) -> str:
        head = ["class", "support", *self.variants]
        lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(self.variants)]
        for row in self.rows:
            support = _support(self.support[row]) if row in self.support else ""
            label = f"**{row}**" if row not in self.classes else row
            cells = [self.cell(row, v) for v in self.variants]
            lines.append("| " + " | ".join([label, support, *cells]) + " |")
        wins, noisy = defaultdict(int), defaultdict(int)
        for row in self.classes:
            best = self.best(row)
            for v in best if len(best) == 1 else ():
                (noisy if self.within_noise(row) else wins)[v] += 1
        if len(self.variants) > 1:
            won = " | ".join(str(wins[v]) for v in self.variants)
            lines.append(f"| classes won (alone) | | {won} |")
            if self.seeds() > 1:
                within = " | ".join(str(noisy[v]) for v in self.variants)
                lines.append(f"| best but within seed noise (≈) | | {within} |")
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        cols = ["class", "support"]
        for v in self.variants:
            cols += [f"{v} mean", f"{v} std", f"{v} n"]
        out = [",".join(_csv(c) for c in cols)]
        for row in self.rows:
            cells = [row, _support(self.support[row]) if row in self.support else ""]
            for v in self.variants:
                n = len(self.values.get(row, {}).get(v, []))
                cells += [_num(self.mean(row, v)), _num(self.std(row, v)), str(n)]
            out.append(",".join(_csv(c) for c in cells))
        return "\n".join(out) + "\n"

    def table(self) -> dict[str, list]:
        """The model x class table as columns, for `MlflowClient.log_table` (the UI shows it as
        a table): class, support, then each variant's mean and std over seeds."""
        columns: dict[str, list] = {"class": list(self.rows)}
        columns["support"] = [self.support.get(row) for row in self.rows]
        for v in self.variants:
            columns[f"{v} mean"] = [_none(self.mean(row, v)) for row in self.rows]
            columns[f"{v} std"] = [_none(self.std(row, v)) for row in self.rows]
        return columns

    def heatmap(self) -> Any:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows
        data = np.array([[self.mean(r, v) for v in self.variants] for r in rows])
        height = 0.32 * len(rows) + 1.6
        figsize = (1.6 * len(self.variants) + 4, height)
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")  # labels inside the canvas
        shown = np.ma.masked_invalid(data)
        image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(self.variants)), self.variants, rotation=30, ha="right")
        labels = [f"{r} ({_support(self.support[r])})" if r in self.support else r for r in rows]
        ax.set_yticks(range(len(rows)), labels)
        for i, row in enumerate(rows):
            best = self.best(row)
            for j, v in enumerate(self.variants):
                if np.isnan(data[i, j]):
                    ax.text(j, i, "n/a", ha="center", va="center", color="grey", fontsize=7)
                    continue
                text = f"{data[i, j]:.2f}" + ("*" if v in best else "")
                color = "black" if data[i, j] > 0.6 else "white"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
        ax.axhline(len(self.classes) - 0.5, color="white", linewidth=6)  # summary rows apart
        for tick in ax.get_yticklabels()[len(self.classes) :]:
            tick.set_fontweight("bold")
        fig.colorbar(image, ax=ax, label="test F1")
        seeds = f", mean of {self.seeds()} seeds" if self.seeds() > 1 else ""
        ax.set_title(f"test F1 by class (support in brackets; * best){seeds}")
        return fig


def _support(value: float) -> str:
    """Test images with the class; a mean over seeds (whose splits differ) keeps one decimal."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _none(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def _num(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.4f}"


def _csv(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"') else text


# ---------------------------------------------------------------------- reading MLflow
def _overrides(run: Any) -> dict[str, str]:
    text = run.data.tags.get("hydra_overrides", "")
    out = {}
    for item in shlex.split(text) if text and text != "(none)" else []:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out


def variant_names(runs: list[Any]) -> dict[str, str]:
    """Run id -> the label of its variant: the overrides that differ between jobs, the seeds
    (training and split) and the cross-validation fold aside (their jobs are pooled)."""
    parsed = {r.info.run_id: _overrides(r) for r in runs}
    keys = sorted({k for o in parsed.values() for k in o} - POOLED)
    varying = [k for k in keys if len({o.get(k) for o in parsed.values()}) > 1]
    names = {}
    for run in runs:
        o = parsed[run.info.run_id]
        if varying == ["model"]:
            names[run.info.run_id] = o["model"]
        elif varying:
            names[run.info.run_id] = " ".join(f"{k}={o.get(k, '-')}" for k in varying)
        else:
            names[run.info.run_id] = run.data.tags.get("model", run.info.run_name)
    return names


def find_parent(client: Any, parent_id: str | None, experiment: str | None) -> Any:
    from taco.tracking.sweep import SWEEP_TAG

    if parent_id:
        try:
            return client.get_run(parent_id)
        except Exception:
            raise DataError(f"no run {parent_id} in {client.tracking_uri}") from None
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise DataError(f"no experiment named {experiment!r} in {client.tracking_uri}")
        experiments = [found.experiment_id]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        raise DataError(f"no experiments in {client.tracking_uri}: run `make compare` first")
    parents = client.search_runs(
        experiments,
        filter_string=f"tags.`{SWEEP_TAG}` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        where = f"experiment {experiment!r}" if experiment else client.tracking_uri
        raise DataError(f"no sweep (multirun parent run) in {where}: run `make compare` first")
    return parents[0]


def not_finished(parent: Any, unfinished: list[Any]) -> list[str]:
    """A line per job of the sweep that has no result: RUNNING (and whether its process is
    gone), FAILED, KILLED, or never started."""
    from taco.tracking.stale import describe

    started = [describe(r) for r in sorted(unfinished, key=lambda r: r.info.start_time)]
    never = parent.data.tags.get("jobs_not_started", "")
    return [*started, *(line for line in never.splitlines() if line)]


def collect(client: Any, parent: Any) -> Comparison:
    from taco.tracking.sweep import child_runs

    children = child_runs(client, parent.info.run_id)
    finished = [r for r in children if r.info.status == "FINISHED"]
    unfinished = [r for r in children if r.info.status != "FINISHED"]
    if not finished:
        missing = "\n  ".join(not_finished(parent, unfinished)) or "(no job logged a run)"
        raise DataError(
            f"sweep {parent.info.run_id} has no finished job ({len(children)} run(s) in all):"
            f"\n  {missing}"
        )
    finished.sort(key=lambda r: (int(r.data.tags.get("sweep_job", 0)), r.info.start_time))
    names = variant_names(finished)
    variants = list(dict.fromkeys(names[r.info.run_id] for r in finished))
    comparison = Comparison(parent, variants, [], {}, unfinished=unfinished)
    support: dict[str, list[float]] = defaultdict(list)
    for run in finished:  # in job order: within a variant, the seeds in sweep order
        variant = names[run.info.run_id]
        comparison.runs.setdefault(variant, []).append(run)
        metrics = run.data.metrics
        for key, value in metrics.items():
            match = re.fullmatch(r"test/(f1|support)/(.+)", key)
            if match and match.group(1) == "f1":
                comparison.add(match.group(2), variant, value)
            elif match:
                support[match.group(2)].append(value)
        for label, key in SUMMARY_ROWS:
            if key in metrics:
                comparison.add(label, variant, metrics[key])
    comparison.support = {c: float(np.mean(v)) for c, v in support.items()}
    comparison.classes = sorted(comparison.support, key=lambda c: (-comparison.support[c], c))
    return comparison


# ---------------------------------------------------------------------- outputs
def log_to_parent(client: Any, comparison: Comparison, folder: Path) -> None:
    """The table (as files, and as an MLflow table the UI shows), the heatmap, and a few summary
    metrics per model (`compare/<summary>/<model>`) on the sweep's parent run."""
    run_id = comparison.parent.info.run_id
    for name in ("comparison.md", "comparison.csv", "f1_heatmap.png"):
        client.log_artifact(run_id, str(folder / name), "comparison")
    client.log_table(run_id, comparison.table(), "comparison/table.json")
    for variant in comparison.variants:
        for label, key in SUMMARY_ROWS:
            value = comparison.mean(label, variant)
            if not np.isnan(value):
                name = key.removeprefix("test/")
                client.log_metric(run_id, f"compare/{name}/{sanitize(variant)}", value)


def write_outputs(comparison: Comparison, folder: Path) -> None:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.md").write_text(comparison.markdown())
    (folder / "comparison.csv").write_text(comparison.csv())
    figure = comparison.heatmap()
    figure.savefig(folder / "f1_heatmap.png", dpi=110)
    plt.close(figure)


def study_description(study: str) -> str:
    """The leading comment of `conf/experiment/<study>.yaml`: what the study is and why."""
    from taco.config import CONF_DIR

    path = CONF_DIR / "experiment" / f"{study}.yaml"
    if not path.is_file():
        return ""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line[1:].strip())
    return " ".join(" ".join(lines).split())


def report_markdown(
    comparison: Comparison, study: str, command: str, body: str | None = None
) -> str:
    """REPORT.md: what the study is, how to re-run it, where and with what it ran, then `body`
    (default: the seeds' model x class table) and the per-variant lines."""
    parent = comparison.parent
    tags = parent.data.tags
    start, end = parent.info.start_time, parent.info.end_time
    wall = f"{(end - start) / 60000:.1f} min" if end else "still running"
    jobs = sum(len(r) for r in comparison.runs.values())
    lines = [
        f"# {study}: test F1 by class",
        "",
        *([study_description(study), ""] if study_description(study) else []),
        "Produced by `taco-compare` from the sweep's runs in MLflow; do not edit by hand.",
        "",
        "Re-run the study and this report with:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- sweep parent run: `{parent.info.run_id}` ({parent.info.status}), "
        f"{jobs} finished job(s), wall time {wall}",
        f"- sweep overrides: `{tags.get('hydra_overrides', '')}`",
        f"- launcher: `{tags.get('launcher', '')}`",
        f"- git commit: `{tags.get('git_commit', '?')}`"
        + (" (uncommitted changes)" if tags.get("git_dirty") == "true" else ""),
        f"- written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        *_machine_lines(comparison),
        "",
        body or _seeds_body(comparison),
    ]
    return "\n".join([*lines, *_per_variant_lines(comparison)]) + "\n"


def _seeds_body(comparison: Comparison) -> str:
    return "\n".join(
        [
            "Thresholds are tuned per class on the validation split; F1 is on the test split; "
            "support is the number of test images with the class. **Bold**: the best variant of "
            "the row. n/a: the class has no positive test image, so its F1 is undefined (a model "
            "that predicts no positive where there are some scores 0, not n/a). Macro F1 is the "
            "mean F1 over the classes with at least one positive test image: a class with none "
            "is left out, even where a model predicts it (those false positives cost nothing)."
            + (
                " Cells are mean ± std over seeds; ≈: the best mean, but its mean ± std overlaps "
                "another variant's, so the difference is within seed noise (not bold, not a win)."
                if comparison.seeds() > 1
                else ""
            ),
            "",
            comparison.markdown(),
            "![test F1 heatmap](f1_heatmap.png)",
            "",
        ]
    )


def _machine_lines(comparison: Comparison) -> list[str]:
    """Where the jobs ran (tags of their runs): numbers move with the CPU and the versions."""
    runs = [r for rs in comparison.runs.values() for r in rs]

    def seen(tag: str) -> str:
        return "; ".join(sorted({r.data.tags.get(tag, "not recorded") for r in runs}))

    return [f"- hardware: CPU {seen('cpu')}, GPU {seen('gpu')}", f"- versions: {seen('versions')}"]


def _per_variant_lines(comparison: Comparison) -> list[str]:
    """The first job of each variant (epochs, time, floors), then the jobs left out."""
    lines = [
        "Per variant (the first job of each):",
        "",
        "| variant | run | epochs | fit s | floor: predict all | floor: prevalence |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for variant, runs in comparison.runs.items():
        m = defaultdict(lambda: float("nan"), runs[0].data.metrics)
        lines.append(
            f"| {variant} | `{runs[0].info.run_id[:8]}` | {m['epochs_trained']:.0f} "
            f"| {m['fit_seconds']:.0f} | {m['test/floor/f1_macro_all']:.3f} "
            f"| {m['test/floor/f1_macro_prevalence']:.3f} |"
        )
    if comparison.unfinished:
        lines += ["", "Jobs that did not finish (left out of the table):", ""]
        lines += [
            f"- `{r.info.run_id[:8]}` {r.data.tags.get('hydra_overrides', '')}: {r.info.status}"
            for r in comparison.unfinished
        ]
    return lines

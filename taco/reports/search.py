"""`taco-compare` on a hyperparameter search's parent run: the best trial's per-class test table,
beside the predict-every-class floor. The trial was chosen on validation among many, so its
validation score is optimistic; its test numbers are the search's one look at test."""

from __future__ import annotations

from typing import Any

import numpy as np

from taco import tables
from taco.errors import DataError
from taco.metrics import sanitize
from taco.reports.floors import floors
from taco.reports.runs import load_predictions
from taco.tracking.lineage import child_runs
from taco.tracking.tags import Tag


def is_search(parent: Any) -> bool:
    return Tag.OPTUNA_BEST_TRIAL in parent.data.tags


def best_run(client: Any, parent: Any) -> Any:
    """The best trial's finished child run (its latest, where a trial was asked again)."""
    best = parent.data.tags[Tag.OPTUNA_BEST_TRIAL]
    runs = [
        r
        for r in child_runs(client, parent.info.run_id)
        if r.data.tags.get(Tag.OPTUNA_TRIAL) == best and r.info.status == "FINISHED"
    ]
    if not runs:
        raise DataError(
            f"search {parent.info.run_id}: the run of its best trial ({best}) is not in the "
            "store (deleted?): re-run the search to log it"
        )
    return max(runs, key=lambda r: r.info.start_time)


def markdown(client: Any, parent: Any) -> str:
    """The best trial's table, under a header that says how it was chosen."""
    run = best_run(client, parent)
    metrics, tags = run.data.metrics, parent.data.tags
    support = "test/support/"
    names = sorted(k.removeprefix(support) for k in metrics if k.startswith(support))
    try:
        logged = load_predictions(client, run)
        floor = floors(logged["y_true"], [sanitize(str(c)) for c in logged["class_names"]])
    except DataError:
        floor = None
    trials = {
        k.removeprefix("optuna/trials_"): int(v)
        for k, v in parent.data.metrics.items()
        if k.startswith("optuna/trials_")
    }
    counts = ", ".join(f"{n} {state}" for state, n in sorted(trials.items()))
    params = {k.removeprefix("best/"): v for k, v in tags.items() if k.startswith("best/")}
    lines = [
        f"Search {parent.info.run_id}: trial {tags[Tag.OPTUNA_BEST_TRIAL]} is the best of "
        f"{sum(trials.values())} ({counts}), run {run.info.run_id}.",
        "Its configuration was chosen on validation (macro F1 "
        f"{_f(metrics, 'val/final/f1_macro')} there): that number is optimistic. The test "
        "numbers below are the search's only look at test.",
        "",
        *(f"- {k} = {v}" for k, v in params.items()),
        "",
    ]
    rows = []
    for name in names:
        every = floor.f1("floor: every class", name) if floor else float("nan")
        rows.append([name, int(metrics[f"test/support/{name}"]), _f(metrics, f"test/f1/{name}"),
                     _num(every)])  # fmt: skip
    macro_floor = floor.f1("floor: every class", "macro F1") if floor else float("nan")
    rows.append(["macro F1", "", _f(metrics, "test/f1_macro"), _num(macro_floor)])
    head = ["class", "test support", "test F1", "floor: every class"]
    return "\n".join(lines) + "\n" + tables.markdown(head, rows)


def _f(metrics: dict, key: str) -> str:
    return _num(metrics.get(key, float("nan")))


def _num(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3f}"

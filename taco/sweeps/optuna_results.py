"""What a search leaves in its sweep folder for the parent run (`taco.sweeps.parent` logs it):
`optimization_results.yaml` (the best trial, counts, epochs trained), `workers.yaml` (each
worker's busy and idle time) and `optuna/*.png`: Optuna's optimization history, parameter
importances and intermediate values, and the best value so far against wall time."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import yaml

from taco.sweeps import optuna_study

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
WORKERS_FILE = "workers.yaml"
PLOTS_DIR = "optuna"


def write_results(
    study: Any,
    sweep_dir: Path,
    started: float,
    timeline: list[tuple[int, int, float, float]],
    workers: int,
) -> dict:
    """The files above; returns the results."""
    from optuna.trial import TrialState

    sweep_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    results: dict[str, Any] = {
        "name": study.study_name,
        "direction": study.direction.name.lower(),
        "trials": {k: v for k, v in states.items() if v},
        "epochs_trained": sum(epochs(t) for t in trials),
    }
    if states.get("COMPLETE"):
        best = study.best_trial
        results.update(
            best_trial=best.number, best_value=float(best.value), best_params=dict(best.params)
        )
    (sweep_dir / RESULTS_FILE).write_text(yaml.safe_dump(results, sort_keys=False))
    idle = worker_idle(timeline, workers, started)
    (sweep_dir / WORKERS_FILE).write_text(yaml.safe_dump(idle, sort_keys=False))
    plots(study, sweep_dir / PLOTS_DIR, started)
    return results


def epochs(trial: Any) -> int:
    """Epochs a trial trained: its last reported step (each validation epoch reports one)."""
    steps = trial.intermediate_values
    return int(max(steps)) if steps else 0


def worker_idle(
    timeline: list[tuple[int, int, float, float]], workers: int, started: float
) -> dict[str, Any]:
    """Each worker's busy seconds and idle share of the sweep's wall time (this run's jobs)."""
    if not timeline:
        return {"wall_seconds": 0.0, "workers": []}
    end = max(t[3] for t in timeline)
    wall = max(end - started, 1e-9)
    rows = []
    for worker in range(workers):
        busy = sum(e - s for w, _, s, e in timeline if w == worker)
        jobs = sum(1 for w, *_ in timeline if w == worker)
        rows.append(
            {
                "worker": worker,
                "jobs": jobs,
                "busy_seconds": round(busy, 2),
                "idle_share": round(1 - busy / wall, 4),
            }
        )
    return {"wall_seconds": round(wall, 2), "workers": rows}


def plots(study: Any, folder: Path, started: float) -> None:
    """Each figure Optuna can draw for this study; one that cannot (too few trials, a single
    parameter for importances) is skipped with a line in the log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "optimization_history": views.plot_optimization_history,
        "param_importances": views.plot_param_importances,
        "intermediate_values": views.plot_intermediate_values,
    }
    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        del figures["param_importances"]  # nothing to attribute
    for name, draw in figures.items():
        try:
            with warnings.catch_warnings():  # an empty legend, an experimental function
                warnings.simplefilter("ignore")
                axes = draw(study)
            axes.figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
        except Exception as exc:  # e.g. importances need two completed trials
            log.info("no %s plot: %s", name, exc)
    trials = study.get_trials(deepcopy=False)
    first = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    origin = first.timestamp() if first else started  # the study's start: resumed ones too
    points = optuna_study.best_so_far(trials, _maximize(study), origin)
    if points:
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.step([p[0] / 60 for p in points], [p[1] for p in points], where="post")
        axes.set_xlabel("wall time (min)")
        axes.set_ylabel("best value so far")
        axes.set_title(f"{study.study_name}: best so far")
        figure.savefig(folder / "best_so_far.png", dpi=100, bbox_inches="tight")
        plt.close(figure)


def _maximize(study: Any) -> bool:
    return study.direction.name == "MAXIMIZE"

"""Threshold rules compared on a sweep's own jobs (`make bench-thresholds`): each job's logged
validation predictions (`predictions/val.npz`) fit each rule's thresholds, which are applied to
its test predictions (`predictions/test.npz`); per-class F1 is then pooled over the jobs' test
images (out of fold, for a cross-validation). The models are the same for every rule, so the
difference is the rule's alone.

Rules: `alone` (every class with a validation positive tuned on its own, before this release),
`capped-k` (a class with fewer than k validation positives keeps its tuned threshold only where
it predicts at most 2x its positives: `trainer.threshold_min_positives=k`; 5 is the default),
and `fixed-0.5`.
Classes are grouped by their validation positives in the job: rare (< 5) and common.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np


def rules() -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    from taco.metrics import tune_thresholds

    return {
        "alone": lambda y, s: tune_thresholds(y, s, min_positives=1),
        "capped-3": lambda y, s: tune_thresholds(y, s, min_positives=3),
        "capped-5": lambda y, s: tune_thresholds(y, s, min_positives=5),
        "capped-10": lambda y, s: tune_thresholds(y, s, min_positives=10),
        "fixed-0.5": lambda y, s: np.full(y.shape[1], 0.5),
    }


def main() -> None:
    import mlflow

    from taco.config import default_tracking_uri
    from taco.reports.runs import collect, find_parent, load_predictions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="compare_models_cv")
    parser.add_argument("--variant", default="cnn")
    parser.add_argument("--rare", type=int, default=5, help="validation positives below: rare")
    args = parser.parse_args()
    client = mlflow.MlflowClient(args.tracking_uri or default_tracking_uri())
    sweep = collect(client, find_parent(client, None, args.experiment))
    runs = sweep.runs[args.variant]
    found = {name: ([], []) for name in rules()}  # rule -> (y_test parts, decided parts)
    rare_parts = []
    for run in runs:
        val, test = load_predictions(client, run, "val"), load_predictions(client, run, "test")
        rare_parts.append(np.broadcast_to(val["y_true"].sum(0) < args.rare, test["y_true"].shape))
        for name, rule in rules().items():
            thresholds = rule(val["y_true"], val["scores"])
            found[name][0].append(test["y_true"])
            found[name][1].append(test["scores"] >= thresholds)
    names = [str(c) for c in load_predictions(client, runs[0], "test")["class_names"]]
    rare = np.concatenate(rare_parts)
    print(
        f"{args.experiment} / {args.variant}: {len(runs)} jobs, "
        f"{sum(len(p) for p in found['alone'][0])} test images pooled\n"
    )
    rare_head = f"rare classes (job-wise < {args.rare} val positives)"
    print(f"| rule | macro F1 | {rare_head} | common | micro F1 |")
    print("|---|---:|---:|---:|---:|")
    for name, (ys, ds) in found.items():
        y, d = np.concatenate(ys).astype(bool), np.concatenate(ds)
        macro, micro = _f1(y, d), _f1(y.ravel()[:, None], d.ravel()[:, None])
        in_rare = _f1(np.where(rare, y, False), np.where(rare, d, False))
        in_common = _f1(np.where(~rare, y, False), np.where(~rare, d, False))
        print(f"| {name} | {macro:.3f} | {in_rare:.3f} | {in_common:.3f} | {micro:.3f} |")
    print(f"\nclasses: {len(names)}; rare/common F1: macro F1 over the (class, job) cells of "
          "each group, pooled over the jobs' test images")  # fmt: skip


def _f1(y: np.ndarray, d: np.ndarray) -> float:
    """Macro F1 over the columns with a positive."""
    tp = (y & d).sum(0)
    positives, predicted = y.sum(0), d.sum(0)
    defined = positives > 0
    return float((2 * tp / np.maximum(positives + predicted, 1))[defined].mean())


if __name__ == "__main__":
    main()

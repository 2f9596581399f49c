"""Every metric in one place: loss, per-epoch scores, per-class scores, thresholds, floors.

A class with no positives in the evaluated part has an undefined F1 (NaN): it is shown as such and
left out of the macro average, which reports how many classes it averages over. The names below
are the contract between the Trainer, its callbacks (progress bar, curves, monitors), the run
logger and `taco-compare`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from taco import tables

# Per-epoch metrics the Trainer puts in `callback_metrics` (monitors choose among them).
EPOCH_METRICS = (
    "train/loss",
    "val/loss",
    "val/f1_macro",
    "val/f1_macro_fixed",
    "epoch_seconds",
    "train_seconds",  # the part of epoch_seconds spent training (not validating): img/s
    "lr",
)
# Summary metrics of a scored part, logged as `<prefix>/<name>`.
SUMMARY = ("f1_micro", "f1_macro", "f1_samples", "f1_macro_classes")
# The summaries a comparison of runs shows, with their labels.
HEADLINE = {"f1_macro": "macro F1", "f1_micro": "micro F1"}
# Prefixes of the scored parts: the best epoch on validation (tuned thresholds), and test.
FINAL_PARTS = ("val/final", "test")
PER_CLASS = ("f1", "precision", "recall")

_ALLOWED = re.compile(r"[^A-Za-z0-9_\-. ]")


def sanitize(name: str) -> str:
    """A class name as an MLflow metric-name part: '&' -> 'and', other odd characters -> '_'."""
    return _ALLOWED.sub("_", name.replace("&", "and")).strip()


def summary_names() -> list[str]:
    """What `optimized_metric` may name: `val/final/*` and `test/*` summaries."""
    return [f"{part}/{name}" for part in FINAL_PARTS for name in SUMMARY]


@dataclass
class Evaluation:
    """Per-class and summary scores of one part at given thresholds."""

    class_names: list[str]
    precision: np.ndarray  # NaN where nothing was predicted positive
    recall: np.ndarray  # NaN where the class has no positives
    f1: np.ndarray  # NaN where the class has no positives
    support: np.ndarray
    f1_micro: float
    f1_macro: float
    f1_samples: float
    macro_classes: int  # classes the macro F1 averages over (support > 0)
    thresholds: np.ndarray = field(default_factory=lambda: np.array([]))
    # what was scored: kept so the predictions can be logged and any metric recomputed
    y_true: np.ndarray = field(default_factory=lambda: np.array([]), repr=False)
    scores: np.ndarray = field(default_factory=lambda: np.array([]), repr=False)

    def summary(self, prefix: str) -> dict[str, float]:
        values = {
            "f1_micro": self.f1_micro,
            "f1_macro": self.f1_macro,
            "f1_samples": self.f1_samples,
            "f1_macro_classes": float(self.macro_classes),
        }
        return {f"{prefix}/{name}": values[name] for name in SUMMARY}

    def per_class(self, prefix: str) -> dict[str, float]:
        """Scalar metrics per class (`test/f1/<class>`); undefined values are not logged."""
        out: dict[str, float] = {}
        for i, name in enumerate(self.class_names):
            key = sanitize(name)
            out[f"{prefix}/support/{key}"] = float(self.support[i])
            for metric in PER_CLASS:
                value = float(getattr(self, metric)[i])
                if not np.isnan(value):
                    out[f"{prefix}/{metric}/{key}"] = value
        return out

    def table(self) -> str:
        """Markdown table: one row per class, undefined values shown as 'n/a'."""
        rows = [
            [
                name,
                int(self.support[i]),
                _fmt(self.precision[i]),
                _fmt(self.recall[i]),
                _fmt(self.f1[i]),
                _fmt(self.thresholds[i] if len(self.thresholds) else np.nan),
            ]
            for i, name in enumerate(self.class_names)
        ]
        head = ["class", "support", "precision", "recall", "f1", "threshold"]
        return tables.markdown(head, rows, padded=True) + (
            f"\nmicro F1 {self.f1_micro:.3f} | macro F1 {self.f1_macro:.3f} over "
            f"{self.macro_classes}/{len(self.class_names)} classes with positives | "
            f"samples F1 {self.f1_samples:.3f}"
        )


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def evaluate(
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: float | np.ndarray,
    class_names: Sequence[str],
) -> Evaluation:
    """Per-class precision/recall/F1/support and micro/macro/samples F1 (scikit-learn)."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(int)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (y_true.shape[1],)).copy()
    y_pred = (np.asarray(scores) >= thr).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=np.nan
    )
    defined = support > 0
    f1 = np.where(defined, np.nan_to_num(f1, nan=0.0), np.nan)  # no positives -> undefined
    recall = np.where(defined, recall, np.nan)
    return Evaluation(
        class_names=list(class_names),
        precision=np.asarray(precision, float),
        recall=np.asarray(recall, float),
        f1=f1,
        support=np.asarray(support, int),
        f1_micro=float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        f1_macro=float(np.mean(f1[defined])) if defined.any() else float("nan"),
        f1_samples=float(f1_score(y_true, y_pred, average="samples", zero_division=0)),
        macro_classes=int(defined.sum()),
        thresholds=thr,
        y_true=y_true,
        scores=np.asarray(scores),
    )


def bce(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean binary cross-entropy over images and classes."""
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def epoch_scores(
    y_true: np.ndarray, scores: np.ndarray, min_positives: int = 1
) -> dict[str, float]:
    """The per-epoch validation metrics: loss, macro F1 at tuned and at fixed 0.5 thresholds."""
    tuned = tune_thresholds(y_true, scores, min_positives=min_positives)
    return {
        "val/loss": bce(y_true, scores),
        "val/f1_macro": macro_f1(y_true, scores, tuned),
        "val/f1_macro_fixed": macro_f1(y_true, scores, 0.5),
    }


def macro_f1(y_true: np.ndarray, scores: np.ndarray, thresholds: float | np.ndarray) -> float:
    """Macro F1 over classes with positives, in plain numpy: the per-epoch fast path.

    Equal to `evaluate(...).f1_macro` (a test checks it) without scikit-learn's input checks,
    which cost more than the validation forward pass on small sets.
    """
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(scores) >= np.asarray(thresholds, dtype=float)
    tp = (y & pred).sum(0)
    positives = y.sum(0)
    defined = positives > 0
    if not defined.any():
        return float("nan")
    f1 = 2 * tp / np.maximum(positives + pred.sum(0), 1)
    return float(f1[defined].mean())


# a rare class's tuned threshold predicts at most this many times its validation positives
RARE_CAP = 2


def tune_thresholds(
    y_true: np.ndarray,
    scores: np.ndarray,
    default: float = 0.5,
    min_positives: int = 1,
    rare_cap: int = RARE_CAP,
) -> np.ndarray:
    """Per class, the threshold that maximises that class's F1 on (y_true, scores); for a class
    with fewer than `min_positives` positive images, never one that predicts more than
    `rare_cap` times its positives.

    Tuned on one or two positives, the best F1 can sit just below the lowest positive's score,
    which may be "predict almost every image" (precision 0.02, recall 1.0): a threshold fitted
    to noise. Such a class is capped at the score that predicts its `rare_cap` x positives
    top-scored images (`benchmarks/thresholds.py` measures the rule against tuning alone). The
    threshold sits midway between the lowest score predicted positive and the next score below
    it. A class without positives keeps `default` (capped alike, at its top-scored image).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=float)
    positives = y_true.sum(0)
    out = np.full(y_true.shape[1], default, dtype=float)
    for c in range(y_true.shape[1]):
        if positives[c]:
            out[c] = _best_threshold(y_true[:, c], scores[:, c], default)
        if positives[c] >= min_positives or len(scores) < 2:
            continue
        most = min(max(int(positives[c]) * rare_cap, 1), len(scores) - 1)
        if (scores[:, c] >= out[c]).sum() > most:
            top = np.sort(scores[:, c])[::-1]
            out[c] = (top[most - 1] + top[most]) / 2
    return out


def _best_threshold(y_true: np.ndarray, scores: np.ndarray, default: float) -> float:
    """The threshold with the best F1 of the binary decisions (y_true, scores >= threshold)."""
    positives = int(y_true.sum())
    if positives == 0:
        return default
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], y_true[order]
    tp = np.cumsum(y)
    predicted = np.arange(1, len(s) + 1)
    # only cut where the next score is strictly lower (ties go together)
    cut = np.r_[s[1:] < s[:-1], True]
    f1 = np.where(cut, 2 * tp / (predicted + positives), -1)
    k = int(np.argmax(f1))
    below = s[k + 1] if k + 1 < len(s) else s[k] - 1e-3
    return float((s[k] + below) / 2)


def floors(
    y_train: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str],
    seed: int = 0,
    draws: int = 20,
) -> dict[str, float]:
    """Macro F1 of trivial predictors on test: every class, and random at training prevalence."""
    all_pos = evaluate(y_test, np.ones(y_test.shape, float), 0.5, class_names).f1_macro
    prevalence = np.asarray(y_train, float).mean(0)
    rng = np.random.default_rng(seed)
    macro = [
        evaluate(
            y_test, (rng.random(y_test.shape) < prevalence).astype(float), 0.5, class_names
        ).f1_macro
        for _ in range(draws)
    ]
    return {"floor/f1_macro_all": all_pos, "floor/f1_macro_prevalence": float(np.mean(macro))}

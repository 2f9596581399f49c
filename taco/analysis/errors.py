"""Which test images a class is wrong on, and what is predicted instead when it is missed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taco.metrics import Evaluation


@dataclass(frozen=True)
class ClassErrors:
    """One class's worst errors at its threshold: rows of the scored images."""

    column: int
    name: str
    threshold: float
    positives: int
    false_positives: np.ndarray  # negatives scored at or above the threshold, highest first
    false_negatives: np.ndarray  # positives scored below the threshold, lowest first


def decisions(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The multi-hot predictions: a class is predicted where its score reaches its threshold."""
    return np.asarray(scores) >= np.asarray(thresholds)[None, :]


def class_errors(result: Evaluation, per_class: int = 6) -> list[ClassErrors]:
    """For each class with positives, its `per_class` most confident false positives and its
    `per_class` most confidently missed positives (ties: the earlier row first), of the scores
    and thresholds `result` was evaluated at."""
    y_true = np.asarray(result.y_true).astype(bool)
    scores, thresholds = np.asarray(result.scores, dtype=np.float64), result.thresholds
    class_names = result.class_names
    predicted = decisions(scores, thresholds)
    found = []
    for c, name in enumerate(class_names):
        if not y_true[:, c].any():
            continue
        fp = np.flatnonzero(~y_true[:, c] & predicted[:, c])
        fn = np.flatnonzero(y_true[:, c] & ~predicted[:, c])
        found.append(
            ClassErrors(
                column=c,
                name=name,
                threshold=float(thresholds[c]),
                positives=int(y_true[:, c].sum()),
                false_positives=fp[np.argsort(-scores[fp, c], kind="stable")][:per_class],
                false_negatives=fn[np.argsort(scores[fn, c], kind="stable")][:per_class],
            )
        )
    return found


def missed_instead(result: Evaluation) -> np.ndarray:
    """(classes, classes + 1) counts: row a, column b is the number of images where class a is
    missed and class b, absent, is predicted; the last column counts the images where a is
    missed and no absent class is predicted."""
    y_true = np.asarray(result.y_true).astype(bool)
    predicted = decisions(result.scores, result.thresholds)
    missed = y_true & ~predicted  # (images, classes)
    wrong = ~y_true & predicted
    counts = missed.T.astype(np.int64) @ wrong.astype(np.int64)
    alone = missed.T.astype(np.int64) @ (~wrong.any(1)).astype(np.int64)
    return np.concatenate([counts, alone[:, None]], axis=1)

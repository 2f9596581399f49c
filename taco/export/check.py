"""An export checked, not assumed: the exported file run by its runtime on the source run's
test split, beside the Keras model on the same images with the same thresholds. Per class: F1
of each and the change; overall: the largest score difference. float32 and float16 exports must
change no class's F1 by more than `F1_BOUND` (and float32 no score by more than `SCORE_BOUND`),
else the export fails naming the class that moved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taco import tables
from taco.metrics import Evaluation, evaluate

F1_BOUND = 0.01
SCORE_BOUND = 1e-3


@dataclass
class ExportCheck:
    """The Keras model's and the export's test scores, evaluated at the same thresholds."""

    keras: Evaluation
    exported: Evaluation
    max_score_diff: float
    quantize: str
    images: int
    retuned: Evaluation | None = None  # int8: the export's F1 at thresholds tuned again on val
    source_run: str = ""  # the run whose model and test split these are

    def moved(self) -> list[str]:
        """Classes whose F1 changed beyond the bound (none expected for float32, float16)."""
        change = np.nan_to_num(self.exported.f1 - self.keras.f1)
        return [
            f"{name} (F1 {k:.3f} -> {e:.3f})"
            for name, k, e, d in zip(
                self.keras.class_names, self.keras.f1, self.exported.f1, change, strict=True
            )
            if abs(d) > F1_BOUND
        ]

    def failures(self) -> list[str]:
        """What breaks the export's bounds; int8 has none (reported as it is)."""
        if self.quantize == "int8":
            return []
        failed = [f"class {m} moved by more than {F1_BOUND}" for m in self.moved()]
        if self.quantize == "none" and self.max_score_diff > SCORE_BOUND:
            failed.append(
                f"a score moved by {self.max_score_diff:.2e}, more than {SCORE_BOUND} "
                "(float32 should match the Keras model)"
            )
        return failed

    def markdown(self) -> str:
        k, e, r = self.keras, self.exported, self.retuned
        head = ["class", "support", "Keras F1", "export F1", "change"]
        head += ["export F1, thresholds re-tuned on validation"] if r else []
        rows = [
            [name, int(k.support[i]), f"{k.f1[i]:.3f}", f"{e.f1[i]:.3f}",
             f"{e.f1[i] - k.f1[i]:+.3f}", *([f"{r.f1[i]:.3f}"] if r else [])]
            for i, name in enumerate(k.class_names)
            if k.support[i] > 0
        ]  # fmt: skip
        rows.append(
            ["macro F1", "", f"{k.f1_macro:.3f}", f"{e.f1_macro:.3f}",
             f"{e.f1_macro - k.f1_macro:+.3f}", *([f"{r.f1_macro:.3f}"] if r else [])]
        )  # fmt: skip
        return (
            f"Test split, {self.images} images, thresholds of the source run; largest score "
            f"difference {self.max_score_diff:.2e}.\n\n" + tables.markdown(head, rows)
        )


def check_export(
    keras_scores: np.ndarray,
    exported_scores: np.ndarray,
    y: np.ndarray,
    thresholds: np.ndarray,
    class_names: list[str],
    quantize: str,
) -> ExportCheck:
    return ExportCheck(
        keras=evaluate(y, keras_scores, thresholds, class_names),
        exported=evaluate(y, exported_scores, thresholds, class_names),
        max_score_diff=float(np.abs(np.asarray(exported_scores) - keras_scores).max()),
        quantize=quantize,
        images=len(y),
    )

"""Figures logged with a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_class_f1(class_names: Sequence[str], f1: np.ndarray, support: np.ndarray, title: str):
    """Horizontal bars of per-class F1; classes with undefined F1 are marked 'n/a'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    fig, ax = plt.subplots(figsize=(7, 0.28 * n + 1.2))
    y = np.arange(n)
    values = np.nan_to_num(f1, nan=0.0)
    ax.barh(y, values, color=["#4c72b0" if not np.isnan(v) else "#cccccc" for v in f1])
    for i, (v, s) in enumerate(zip(f1, support, strict=True)):
        label = "n/a" if np.isnan(v) else f"{v:.2f}"
        ax.text(min(values[i] + 0.01, 0.9), i, f"{label} (n={int(s)})", va="center", fontsize=7)
    ax.set_yticks(y, class_names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig

"""Figures logged with a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_class_f1(
    class_names: Sequence[str],
    f1: np.ndarray,
    support: np.ndarray,
    title: str,
    images: int | None = None,
):
    """Horizontal bars of per-class F1, most frequent class first, each with its floor (the F1
    of calling every one of the `images` test images positive: 2s / (s + images)) drawn as a
    tick; classes with undefined F1 are marked 'n/a'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(class_names)), key=lambda i: (-support[i], class_names[i]))
    names = [class_names[i] for i in order]
    f1, support = np.asarray(f1, float)[order], np.asarray(support, float)[order]
    n = len(names)
    fig, ax = plt.subplots(figsize=(7, 0.28 * n + 1.4), layout="constrained")
    y = np.arange(n)
    values = np.nan_to_num(f1, nan=0.0)
    ax.barh(y, values, color=["#4c72b0" if not np.isnan(v) else "#cccccc" for v in f1])
    if images:
        floor = 2 * support / (support + images)
        ax.scatter(floor, y, marker="|", s=120, color="#dd8452", zorder=3, label="floor")
        ax.legend(loc="lower right", fontsize=7, title="predict every image", title_fontsize=7)
    for i, (v, s) in enumerate(zip(f1, support, strict=True)):
        label = "n/a" if np.isnan(v) else f"{v:.2f}"
        ax.text(min(values[i] + 0.01, 0.9), i, f"{label} (n={int(s)})", va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (classes by test support, most frequent first)")
    ax.set_title(title, fontsize=9)
    return fig


def augmentation_preview(images, augment, copies: int = 4):
    """Each row: one training image as cached, then `copies` augmented versions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(images)
    fig, axes = plt.subplots(rows, copies + 1, figsize=(1.4 * (copies + 1), 1.4 * rows))
    axes = np.atleast_2d(axes)
    for r, image in enumerate(images):
        shown = [image] + [augment(image=np.asarray(image))["image"] for _ in range(copies)]
        for c, picture in enumerate(shown):
            axes[r, c].imshow(picture)
            axes[r, c].axis("off")
    axes[0, 0].set_title("cached", fontsize=7)
    for c in range(1, copies + 1):
        axes[0, c].set_title("augmented", fontsize=7)
    fig.tight_layout()
    return fig

"""Figures logged with a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def f1_heatmap(
    data: np.ndarray,
    row_labels: Sequence[str],
    variants: Sequence[str],
    best: Sequence[set[str]],
    classes: int,
    title: str,
):
    """Rows (classes, then `len(row_labels) - classes` summary rows) x variants, F1 as colour
    and text, the best of each row starred, n/a where undefined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 0.32 * len(row_labels) + 1.6
    figsize = (1.6 * len(variants) + 4, height)
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")  # labels inside the canvas
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for i in range(len(row_labels)):
        for j, v in enumerate(variants):
            if np.isnan(data[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", color="grey", fontsize=7)
                continue
            text = f"{data[i, j]:.2f}" + ("*" if v in best[i] else "")
            color = "black" if data[i, j] > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
    ax.axhline(classes - 0.5, color="white", linewidth=6)  # summary rows apart
    for tick in ax.get_yticklabels()[classes:]:
        tick.set_fontweight("bold")
    fig.colorbar(image, ax=ax, label="test F1")
    ax.set_title(title)
    return fig


def f1_intervals(
    rows: Sequence[str],
    row_labels: Sequence[str],
    variants: Sequence[str],
    value: Callable[[str, str], tuple[float, float, float]],
    xlabel: str,
    floor: Callable[[str], float] | None = None,
):
    """Per row, each variant's F1 with its interval as an error bar (one colour per variant),
    and the row's floor as a grey tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.36 * len(rows) + 1.6), layout="constrained")
    for i in range(0, len(rows), 2):  # bands: which bars belong to which class
        ax.axhspan(i - 0.5, i + 0.5, color="0.94", zorder=0)
    offsets = np.linspace(-0.3, 0.3, len(variants)) if len(variants) > 1 else [0.0]
    for offset, variant in zip(offsets, variants, strict=True):
        y = np.arange(len(rows)) + offset
        f1, low, high = np.array([value(r, variant) for r in rows]).T
        err = np.vstack([f1 - low, high - f1])
        ax.errorbar(f1, y, xerr=err, fmt="o", markersize=3, capsize=2, label=variant)
    if floor is not None:
        ax.scatter([floor(r) for r in rows], np.arange(len(rows)), marker="|", s=120,
                   color="0.45", label="floor", zorder=1)  # fmt: skip
    ax.set_yticks(np.arange(len(rows)), row_labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("F1 by class (support in brackets)", fontsize=9)
    return fig

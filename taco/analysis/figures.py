"""The error-analysis figures: per-class curves and the missed-instead heatmap (matplotlib, Agg
backend: no display needed), error galleries with saliency overlays (PIL images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from taco.analysis.errors import ClassErrors
from taco.analysis.saliency import peak
from taco.metrics import Evaluation


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _with_positives(y_true: np.ndarray) -> list[int]:
    """Classes with test positives, most frequent first."""
    support = np.asarray(y_true).astype(np.int64).sum(0)
    return sorted(np.flatnonzero(support), key=lambda c: (-support[c], c))


def per_class_curves(result: Evaluation, columns: int = 6) -> Any:
    """One panel per class with test positives, most frequent first: its precision-recall curve
    with the tuned threshold's point, and its test F1 against the threshold with the tuned
    threshold as a line (how far from the test optimum, how flat). The panels share one Axes,
    so 60 classes draw in well under a second."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from sklearn.metrics import precision_recall_curve

    y_true, scores, thresholds = result.y_true, result.scores, result.thresholds
    class_names = result.class_names
    plt = _pyplot()
    classes = _with_positives(y_true)
    rows = max(1, -(-len(classes) // columns))
    fig, ax = plt.subplots(figsize=(1.75 * columns, 1.9 * rows + 0.5), layout="constrained")
    grid = np.linspace(0, 1, 101)
    step_x, step_y = 1.2, 1.35
    for k, c in enumerate(classes):
        ox, oy = (k % columns) * step_x, -(k // columns) * step_y
        truth = np.asarray(y_true)[:, c] == 1
        precision, recall, _ = precision_recall_curve(truth, scores[:, c])
        decided = scores[:, c][None, :] >= grid[:, None]
        f1 = 2 * (decided & truth).sum(1) / np.maximum(decided.sum(1) + truth.sum(), 1)
        at = scores[:, c] >= thresholds[c]
        tp = int((at & truth).sum())
        p_at, r_at = tp / max(int(at.sum()), 1), tp / max(int(truth.sum()), 1)
        ax.add_patch(Rectangle((ox, oy), 1, 1, fill=False, ec="#bbbbbb", lw=0.6))
        ax.plot([ox, ox + 1], [oy + truth.mean()] * 2, color="#aaaaaa", ls=":", lw=0.7)
        ax.plot(ox + recall, oy + precision, color="#4c72b0", lw=1)
        ax.plot(ox + grid, oy + f1, color="#dd8452", lw=1)
        ax.plot([ox + thresholds[c]] * 2, [oy, oy + 1], color="#dd8452", ls="--", lw=0.7)
        ax.scatter([ox + r_at], [oy + p_at], color="#4c72b0", s=12, zorder=3)
        name = str(class_names[c])[:22]
        ax.text(ox, oy + 1.04, f"{name} (n={int(truth.sum())})", fontsize=6.5, va="bottom")
    ax.set_xlim(-0.05, columns * step_x - 0.15)
    ax.set_ylim(-(rows - 1) * step_y - 0.05, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    legend = [
        Line2D([], [], color="#4c72b0", lw=1, marker="o", ms=3, label="precision vs recall "
               "(dot: tuned threshold)"),
        Line2D([], [], color="#dd8452", lw=1, label="test F1 vs threshold (dashed: tuned on val)"),
        Line2D([], [], color="#aaaaaa", ls=":", label="prevalence (a random scorer)"),
    ]  # fmt: skip
    fig.legend(handles=legend, loc="outside upper center", ncols=3, fontsize=7, frameon=False)
    return fig


def _labels_of(row: np.ndarray, class_names: Sequence[str], limit: int = 2) -> str:
    names = [class_names[j] for j in np.flatnonzero(row)]
    shown = ", ".join(n[:13] for n in names[:limit])
    return (shown + (f" +{len(names) - limit}" if len(names) > limit else "")) or "(none)"


def error_gallery(
    errors: ClassErrors,
    images: np.ndarray,
    result: Evaluation,
    overlays: dict[int, np.ndarray] | None = None,
    boxes: Sequence[np.ndarray] | None = None,
) -> Any:
    """A PIL image for one class: a row of its most confident false positives, then a row of
    its most confidently missed positives, each thumbnail with the class's score against the
    threshold and the image's true labels. With `overlays` (row -> saliency map of this class)
    the map is laid over the image, its peak marked with a cross, the class's boxes in green.
    Drawn with PIL, not matplotlib: dozens of classes cost a fraction of a second."""
    y_true, scores, class_names = result.y_true, result.scores, result.class_names
    size = images.shape[1]
    scale = max(1, round(120 / size))
    thumb, line, pad = size * scale, 13, 6
    font = ImageFont.load_default(size=11)
    columns = max(len(errors.false_positives), len(errors.false_negatives), 1)
    cell_w, cell_h = max(thumb, 124) + pad, thumb + 2 * line + pad
    width = columns * cell_w + pad
    height = 2 * line + 2 * (line + cell_h) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (pad, 2),
        f"{errors.name}: {errors.positives} test positives, threshold {errors.threshold:.2f}",
        fill="black",
        font=font,
    )
    kinds = (
        ("false positives, highest score first", errors.false_positives),
        ("missed, lowest score first", errors.false_negatives),
    )
    for r, (kind, rows) in enumerate(kinds):
        top = 2 * line + r * (line + cell_h)
        draw.text((pad, top), kind if len(rows) else f"{kind}: none", fill="#444444", font=font)
        for k, i in enumerate(int(i) for i in rows):
            left, y = pad + k * cell_w, top + line
            saliency = overlays.get(i) if overlays is not None else None
            sheet.paste(_thumbnail(images[i], saliency, thumb), (left, y))
            if overlays is not None and i in overlays:
                _mark(draw, overlays[i], boxes[i] if boxes else None, errors.column, left, y, scale)
            score = scores[i, errors.column]
            sign = ">=" if score >= errors.threshold else "<"
            draw.text((left, y + thumb + 1), f"score {score:.2f} {sign} {errors.threshold:.2f}",
                      fill="black", font=font)  # fmt: skip
            draw.text((left, y + thumb + line), _labels_of(y_true[i], class_names),
                      fill="#444444", font=font)  # fmt: skip
    return sheet


def _thumbnail(picture: np.ndarray, saliency: np.ndarray | None, side: int) -> Any:
    shown = _blend(np.asarray(picture, np.uint8), saliency) if saliency is not None else picture
    return Image.fromarray(np.asarray(shown, np.uint8)).resize((side, side), Image.NEAREST)


def image_overlays(
    image: np.ndarray,
    maps: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    class_names: Sequence[str],
    shown: int = 3,
) -> Any:
    """A PIL sheet for one unlabelled image: the image, then where the model looks for each
    class it predicts (at most `shown`, highest score first; the top-scored class if none)."""
    predicted = [c for c in np.argsort(-scores, kind="stable") if scores[c] >= thresholds[c]]
    classes = (predicted or [int(np.argmax(scores))])[:shown]
    side, line, pad = 160, 13, 6
    font = ImageFont.load_default(size=11)
    sheet = Image.new("RGB", ((len(classes) + 1) * (side + pad) + pad, side + line + 2 * pad),
                      "white")  # fmt: skip
    draw = ImageDraw.Draw(sheet)
    sheet.paste(_thumbnail(image, None, side), (pad, pad))
    draw.text((pad, pad + side + 1), "image", fill="black", font=font)
    for k, c in enumerate(classes, start=1):
        left = pad + k * (side + pad)
        sheet.paste(_thumbnail(image, maps[c], side), (left, pad))
        mark = ">=" if scores[c] >= thresholds[c] else "<"
        label = f"{str(class_names[c])[:14]} {scores[c]:.2f} {mark} {thresholds[c]:.2f}"
        draw.text((left, pad + side + 1), label, fill="black", font=font)
    return sheet


def comparison_sheet(
    title: str,
    models: Sequence[str],
    pictures: Sequence[np.ndarray],
    maps: Sequence[Sequence[np.ndarray | None]],
    scores: np.ndarray,
    thresholds: np.ndarray,
    captions: Sequence[str],
) -> Any:
    """Models side by side on the same images for one class: row m is model m's saliency for
    the class over picture k (each model at its own input size), with its score and threshold."""
    side, line, pad, label_w = 120, 13, 6, 110
    font = ImageFont.load_default(size=11)
    width = label_w + len(captions) * (side + pad) + pad
    height = 2 * line + len(models) * (side + line + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 2), title, fill="black", font=font)
    for k, caption in enumerate(captions):
        draw.text((label_w + k * (side + pad), line + 2), caption, fill="#444444", font=font)
    for m, name in enumerate(models):
        top = 2 * line + m * (side + line + pad)
        draw.text((pad, top + side // 2), str(name)[:16], fill="black", font=font)
        for k in range(len(captions)):
            left = label_w + k * (side + pad)
            sheet.paste(_thumbnail(pictures[m][k], maps[m][k], side), (left, top))
            mark = ">=" if scores[m, k] >= thresholds[m] else "<"
            draw.text((left, top + side + 1), f"{scores[m, k]:.2f} {mark} {thresholds[m]:.2f}",
                      fill="black", font=font)  # fmt: skip
    return sheet


def _blend(picture: np.ndarray, saliency: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    import matplotlib

    top = float(np.max(saliency))
    shown = np.clip(saliency / top, 0, 1) if top > 0 else np.zeros_like(saliency)
    colours = matplotlib.colormaps["jet"](shown)[..., :3] * 255
    return ((1 - alpha) * picture + alpha * colours).astype(np.uint8)


def _mark(
    draw: Any,
    saliency: np.ndarray,
    boxes: np.ndarray | None,
    column: int,
    left: int,
    top: int,
    scale: int,
) -> None:
    if boxes is not None:
        rows = np.asarray(boxes).reshape(-1, 5)
        for _, x0, y0, x1, y1 in rows[rows[:, 0] == column]:
            corners = [left + x0 * scale, top + y0 * scale, left + x1 * scale, top + y1 * scale]
            draw.rectangle(corners, outline=(0, 255, 0), width=2)
    x, y = peak(saliency)
    x, y, arm = left + x * scale, top + y * scale, 5
    draw.line([x - arm, y - arm, x + arm, y + arm], fill="white", width=2)
    draw.line([x - arm, y + arm, x + arm, y - arm], fill="white", width=2)


def missed_instead_heatmap(counts: np.ndarray, class_names: Sequence[str]) -> Any:
    """Rows: a class missed; columns: the absent classes predicted on those images (last: none).
    Only classes missed at least once, and classes predicted instead at least once, are shown."""
    plt = _pyplot()
    rows = np.flatnonzero(counts.sum(1))
    columns = [j for j in np.flatnonzero(counts[rows].sum(0)) if j < len(class_names)]
    columns.append(len(class_names))
    names = [*class_names, "(nothing absent)"]
    shown = counts[np.ix_(rows, columns)] if len(rows) else np.zeros((1, 1))
    fig, ax = plt.subplots(
        figsize=(0.32 * len(columns) + 3, 0.28 * max(len(rows), 1) + 2), layout="constrained"
    )
    ax.imshow(shown, cmap="Reds", aspect="auto")
    ax.set_xticks(range(len(columns)), [names[j] for j in columns], rotation=90, fontsize=6)
    ax.set_yticks(range(len(rows)), [class_names[i] for i in rows], fontsize=6)
    dark = 0.6 * shown.max()
    for (r, c), v in np.ndenumerate(shown):
        if v:
            colour = "white" if v > dark else "black"
            ax.text(c, r, str(int(v)), ha="center", va="center", fontsize=5, color=colour)
    ax.set_xlabel("predicted instead (absent from the image)", fontsize=8)
    ax.set_ylabel("missed", fontsize=8)
    ax.set_title("When a class is missed, what is predicted instead (test images)", fontsize=9)
    return fig

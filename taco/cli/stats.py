"""`taco-stats`: per-class image counts per split, labels per image, label co-occurrence.

Uses the same dataset config, class map and seeded split as training, so the numbers describe
exactly what a run with the same overrides trains and tests on. Needs annotations only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from taco import tables
from taco.config import CONF_DIR, build, resolved_config
from taco.errors import cli_errors, hydra_errors
from taco.schema import check_config
from taco.signals import interrupts

log = logging.getLogger("taco.stats")


def class_table(class_names: list[str], parts: dict[str, np.ndarray]) -> str:
    """Markdown: class | images | per part; `parts`: each part's (images, classes) labels."""
    rows = []
    for j, name in enumerate(class_names):
        counts = [int(labels[:, j].sum()) for labels in parts.values()]
        rows.append([name, sum(counts), *counts])
    sizes = [len(labels) for labels in parts.values()]
    rows.append(["(images)", sum(sizes), *sizes])
    return tables.markdown(["class", "images", *parts], rows, padded=True)


def labels_per_image(labels: np.ndarray) -> dict[int, int]:
    counts = np.bincount(labels.sum(1).astype(int))
    return {k: int(v) for k, v in enumerate(counts) if v}


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """(classes, classes): images holding both classes; the diagonal is each class's count."""
    y = labels.astype(np.int64)
    return y.T @ y


def cooccurrence_figure(class_names: list[str], counts: np.ndarray, title: str):
    """Heatmap of P(column class | row class): how often a row class comes with another. The
    diagonal (always 1) is masked, so the scale is the co-occurrences'; each row's label gives
    the class's image count instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diag = np.diag(counts).astype(float)
    share = np.divide(counts, diag[:, None], out=np.zeros(counts.shape), where=diag[:, None] > 0)
    n = len(class_names)
    off_diagonal = np.ma.masked_array(share, mask=np.eye(n, dtype=bool))
    top = float(off_diagonal.max()) if off_diagonal.count() else 1.0
    fig, ax = plt.subplots(figsize=(0.32 * n + 3, 0.32 * n + 2), layout="constrained")
    image = ax.imshow(off_diagonal, cmap="viridis", vmin=0, vmax=max(top, 1e-6))
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=6)
    rows = [f"{name} ({int(count)})" for name, count in zip(class_names, diag, strict=True)]
    ax.set_yticks(range(n), rows, fontsize=6)
    ax.set_title(f"{title} (diagonal masked; images per class in brackets)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, label="P(column | row)")
    return fig


def stats(cfg: DictConfig, out_dir: Path) -> str:
    """The report, through the DataModule protocol only: any data module the config builds."""
    check_config(resolved_config(cfg))
    datamodule = build(cfg.dataset, augmentation=None)
    datamodule.check()
    class_names, parts = datamodule.split_labels()
    used = np.concatenate(list(parts.values()))
    counts = cooccurrence(used)
    hist = labels_per_image(used)
    name = cfg.dataset.name
    report = "\n".join(
        [
            f"# {name}: {len(used)} images, {len(class_names)} classes",
            "",
            *datamodule.notes(),
            "",
            class_table(class_names, parts),
            "",
            "Labels per image: " + ", ".join(f"{k}: {v}" for k, v in hist.items()),
            f"Images with more than one label: {int((used.sum(1) > 1).sum())}",
            "",
        ]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stats.md").write_text(report)
    np.savetxt(
        out_dir / "cooccurrence.csv",
        counts,
        fmt="%d",
        delimiter=",",
        header=",".join(class_names),
        comments="",
    )
    import matplotlib.pyplot as plt

    fig = cooccurrence_figure(class_names, counts, f"{name}: label co-occurrence")
    fig.savefig(out_dir / "cooccurrence.png", dpi=120)
    plt.close(fig)
    return report


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="stats")
def hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.output_dir)
    with cli_errors("taco-stats"):
        print(stats(cfg, out_dir))
    print(f"written to {out_dir} (stats.md, cooccurrence.csv, cooccurrence.png)")


def main() -> None:
    """`taco-stats`: Ctrl-C or SIGTERM ends it with one line."""
    with interrupts("taco-stats"), hydra_errors("taco-stats"):
        hydra_main()


if __name__ == "__main__":
    main()

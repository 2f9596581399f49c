"""One table writer for every table taco writes: Markdown for people (run reports, statistics,
the pointing game, `make reproduce`, the profiler, `taco-stats`, an export's check), CSV for
scripts, columns for `MlflowClient.log_table` (the UI shows them as a table), and the few ways a
number is written. No other module draws a Markdown rule (`tests/test_layout.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def markdown(
    head: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: int = 1,
    text_last: bool = False,
    align: str | None = None,
    padded: bool = False,
) -> str:
    """A Markdown table; the first `left` columns (and with `text_last` the last, a verdict in
    words) are left-aligned, the others right-aligned, or each as `align` says ("l" or "r" per
    column). `padded`: every column as wide as its widest cell, for a console."""
    last = len(head) - 1
    if align is None:
        align = "".join(
            "l" if i < left or (text_last and i == last) else "r" for i in range(len(head))
        )
    cells = [[str(c) for c in row] for row in [head, *rows]]
    if not padded:
        rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
        lines = ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join([lines[0], rule, *lines[1:]]) + "\n"
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if a == "l" else c.rjust(w)
                for c, w, a in zip(row, widths, align, strict=True)
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            "-" * (w + 2) if a == "l" else "-" * (w + 1) + ":"
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])]) + "\n"


def csv(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "\n".join(",".join(_csv_cell(str(c)) for c in row) for row in [head, *rows]) + "\n"


def mlflow_columns(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, list]:
    """Column name -> values, as `MlflowClient.log_table` takes them."""
    return {name: [row[i] for row in rows] for i, name in enumerate(head)}


def num(value: float) -> str:
    """A CSV number: 4 decimals, empty when undefined."""
    return "" if np.isnan(value) else f"{value:.4f}"


def none(value: float) -> float | None:
    """An MLflow table number: 4 decimals, None when undefined."""
    return None if np.isnan(value) else round(float(value), 4)


def class_label(row: str, rare: dict[str, int]) -> str:
    """A class row's name, with ‡ and the fewest validation positives where its threshold was
    tuned on too few of them."""
    return f"{row} ‡ ({rare[row]})" if row in rare else row


def p_value(p: float) -> str:
    return f"{p:.4f}" if p >= 0.0001 else "< 0.0001"


def support(value: float) -> str:
    """Test images with the class; a mean over seeds (whose splits differ) keeps one decimal."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _csv_cell(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"') else text

"""`make reproduce`: a study's committed numbers against a new run of the same study, number by
number, each judged against the spread the committed report states (its seeds' std)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taco.errors import DataError

# comparison.csv keeps 4 decimals: a difference below this is the file's rounding
ROUNDING = 1e-4


@dataclass(frozen=True)
class Check:
    row: str
    variant: str
    committed: float
    spread: float  # the committed std over seeds; 0 when the report had one seed
    new: float
    new_spread: float

    @property
    def within(self) -> bool:
        """The new mean lies in the committed mean ± std (both n/a counts as the same)."""
        if math.isnan(self.committed) or math.isnan(self.new):
            return math.isnan(self.committed) and math.isnan(self.new)
        return abs(self.new - self.committed) <= self.spread + ROUNDING


def committed_numbers(folder: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(row, variant) -> (mean, std) from a study's committed `comparison.csv`."""
    path = folder / "comparison.csv"
    if not path.is_file():
        raise DataError(f"no committed report at {path}: run `make report STUDY={folder.name}`")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    variants = [c.removesuffix(" mean") for c in (rows[0] if rows else {}) if c.endswith(" mean")]
    if not variants:
        raise DataError(f"{path} has no '<variant> mean' columns: regenerate it with make report")
    numbers = {}
    for row in rows:
        for v in variants:
            mean, std = row.get(f"{v} mean", ""), row.get(f"{v} std", "")
            numbers[row["class"], v] = (_float(mean), _float(std) if std else 0.0)
    return numbers


def _float(text: str) -> float:
    return float(text) if text else float("nan")


def checks(committed: dict[tuple[str, str], tuple[float, float]], comparison: Any) -> list[Check]:
    """One check per committed number, in the report's order; a number the new sweep lacks (a
    variant or class gone) fails."""
    out = []
    for (row, variant), (mean, std) in committed.items():
        new, new_std = comparison.mean(row, variant), comparison.std(row, variant)
        out.append(Check(row, variant, mean, std, new, 0.0 if math.isnan(new_std) else new_std))
    return out


def check_table(found: list[Check]) -> str:
    """A Markdown table: committed mean ± std, new mean ± std, difference, within or not."""
    lines = [
        "| class | variant | committed | new | difference | within committed spread |",
        "|---|---|---:|---:|---:|---|",
    ]
    for c in found:
        diff = "" if math.isnan(c.new - c.committed) else f"{c.new - c.committed:+.3f}"
        verdict = "yes" if c.within else "**no**"
        lines.append(
            f"| {c.row} | {c.variant} | {_cell(c.committed, c.spread)} "
            f"| {_cell(c.new, c.new_spread)} | {diff} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std else f"{mean:.3f}"

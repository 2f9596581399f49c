"""`make reproduce`: a study's committed numbers against a new run of the same study, number by
number, each judged against the spread the committed report states: its seeds' mean ± std, or a
cross-validation's 95% bootstrap interval."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taco.errors import DataError

# comparison.csv keeps 4 decimals: a difference below this is the file's rounding
ROUNDING = 1e-4


@dataclass(frozen=True)
class Stated:
    """One committed number with the range the report states for it."""

    value: float
    low: float
    high: float
    text: str  # as the report states it: "0.405 ± 0.020" or "0.62 [0.48, 0.74]"


@dataclass(frozen=True)
class Check:
    row: str
    variant: str
    committed: Stated
    new: float

    @property
    def within(self) -> bool:
        """The new value lies in the committed range (both n/a counts as the same)."""
        if math.isnan(self.committed.value) or math.isnan(self.new):
            return math.isnan(self.committed.value) and math.isnan(self.new)
        return self.committed.low - ROUNDING <= self.new <= self.committed.high + ROUNDING


def committed_numbers(folder: Path) -> dict[tuple[str, str], Stated]:
    """(row, variant) -> the stated number, from a study's committed `comparison.csv`: seed
    sweeps have `<variant> mean/std` columns, cross-validations `<variant> f1/low/high`."""
    path = folder / "comparison.csv"
    if not path.is_file():
        raise DataError(f"no committed report at {path}: run `make report STUDY={folder.name}`")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0]) if rows else []
    seeds = [c.removesuffix(" mean") for c in columns if c.endswith(" mean")]
    folds = [c.removesuffix(" f1") for c in columns if c.endswith(" f1")]
    if not seeds and not folds:
        raise DataError(f"{path} has no '<variant> mean' or '<variant> f1' columns: regenerate it")
    numbers = {}
    for row in rows:
        for v in seeds:
            numbers[row["class"], v] = _mean_std(row[f"{v} mean"], row[f"{v} std"])
        for v in folds:
            numbers[row["class"], v] = _interval(row[f"{v} f1"], row[f"{v} low"], row[f"{v} high"])
    return numbers


def _float(text: str) -> float:
    return float(text) if text else float("nan")


def _mean_std(mean: str, std: str) -> Stated:
    m, s = _float(mean), _float(std) if std else 0.0
    text = "n/a" if math.isnan(m) else (f"{m:.3f} ± {s:.3f}" if s else f"{m:.3f}")
    return Stated(m, m - s, m + s, text)


def _interval(value: str, low: str, high: str) -> Stated:
    v, lo, hi = _float(value), _float(low), _float(high)
    text = "n/a" if math.isnan(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
    return Stated(v, lo, hi, text)


def checks(
    committed: dict[tuple[str, str], Stated], new: Callable[[str, str], float]
) -> list[Check]:
    """One check per committed number, in the report's order; a number the new sweep lacks (a
    variant or class gone) fails."""
    out = []
    for (row, variant), stated in committed.items():
        try:
            value = new(row, variant)
        except KeyError:
            value = float("nan")
        out.append(Check(row, variant, stated, value))
    return out


def check_table(found: list[Check]) -> str:
    """A Markdown table: the committed number as stated, the new one, the difference, within."""
    lines = [
        "| class | variant | committed | new | difference | within committed range |",
        "|---|---|---:|---:|---:|---|",
    ]
    for c in found:
        new = "n/a" if math.isnan(c.new) else f"{c.new:.3f}"
        lines.append(
            f"| {c.row} | {c.variant} | {c.committed.text} | {new} "
            f"| {_difference(c)} | {'yes' if c.within else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def _difference(check: Check) -> str:
    """New minus committed, at the CSV's precision: `0.000` rather than `-0.000` for a number
    that only lost digits to the file's rounding."""
    diff = round(check.new, 4) - check.committed.value
    if math.isnan(diff):
        return ""
    return "0.000" if abs(diff) < 5e-4 else f"{diff:+.3f}"

"""`make reproduce`: a study's committed numbers against a new run of the same study, in one of
two modes, printed with the mode and why.

- **identical**: the new jobs ran on a machine with the committed report's CPU fingerprint,
  library versions, thread count, ISA cap and backend (`reproduce.json` beside the report). The
  arithmetic is then the same, so every number must be the same (to the CSV's 4 decimals).
- **statistical**: anywhere else. Numbers move with the CPU's arithmetic as a new seed moves
  them, so each variant's macro F1 must lie in the 98% prediction interval of a new value,
  Bonferroni over the variants: for a seed study, a new mean of n jobs from the seeds' SD; for a
  cross-validation, a new pooled F1 from the fold jobs' SD (which holds the training noise a
  re-run brings, and the folds' data differences it does not: wider than needed, never
  narrower); for a repeated cross-validation, the recipe-level mean over every fold
  (`recipes.csv`, what its report is about) likewise. The interval over images alone held the
  trained models fixed and failed half the re-runs of an unchanged study
  (`simulate.reproduce_cv_trials`). The per-class rows are shown beside it but decide nothing:
  with 28 classes some would leave any interval by chance.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taco import tables
from taco.errors import DataError

# comparison.csv keeps 4 decimals: a difference below this is the file's rounding
ROUNDING = 1e-4
DECIDING_ROWS = ("macro F1",)
# the chance that a re-run from the committed distribution fails the statistical mode (split
# over the deciding numbers): 2%, so it passes 98% of same-distribution re-runs
ALPHA = 0.02
# what makes two machines compute the same numbers (reproduce.json's "machine")
SAME_ARITHMETIC = ("cpu_fingerprint", "versions", "cpu_threads", "cpu_isa", "backend", "gpu")


@dataclass(frozen=True)
class Stated:
    """One committed number with what the report states about its spread."""

    value: float
    low: float
    high: float
    text: str  # as the report states it: "0.405 [0.380, 0.430]"
    std: float = float("nan")  # over the committed jobs (seed studies)
    n: int = 0  # committed jobs behind the mean (seed studies); 0: a pooled cross-validation


@dataclass(frozen=True)
class Check:
    row: str
    variant: str
    committed: Stated
    new: float
    low: float  # what the new number must lie in
    high: float
    decides: bool  # counts toward the verdict (the others are shown, informative)

    @property
    def within(self) -> bool:
        """The new value lies in the range (both n/a counts as the same)."""
        if math.isnan(self.committed.value) or math.isnan(self.new):
            return math.isnan(self.committed.value) and math.isnan(self.new)
        return self.low - ROUNDING / 2 <= round(self.new, 4) <= self.high + ROUNDING / 2


def committed_numbers(folder: Path) -> dict[tuple[str, str], Stated]:
    """(row, variant) -> the stated number, from a study's committed `recipes.csv` (a repeated
    cross-validation) or `comparison.csv`: seed studies and recipes have `<variant>
    mean/std/n/low/high` columns, cross-validations `<variant> f1/low/high/fold std/folds`."""
    path = folder / "recipes.csv"  # a repeated cross-validation: its recipe-level numbers
    path = path if path.is_file() else folder / "comparison.csv"
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
            numbers[row["class"], v] = _seeds(row, v)
        for v in folds:
            numbers[row["class"], v] = _interval(row, v)
    return numbers


def committed_machine(folder: Path) -> dict[str, str] | None:
    """The committed report's machine (reproduce.json), or None for a report without one."""
    path = folder / "reproduce.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("machine")


def mode(committed: dict[str, str] | None, new: dict[str, str]) -> tuple[str, str]:
    """("identical" | "statistical", why)."""
    if committed is None:
        return "statistical", "the committed report records no machine (reproduce.json)"
    differ = [k for k in SAME_ARITHMETIC if committed.get(k) != new.get(k)]
    if not differ:
        return "identical", (
            f"same CPU fingerprint ({new.get('cpu_fingerprint')}), versions, "
            f"{new.get('cpu_threads')} threads, ISA cap {new.get('cpu_isa')} and backend"
        )
    changes = "; ".join(f"{k}: {committed.get(k)!r} -> {new.get(k)!r}" for k in differ)
    return "statistical", f"another machine or setup ({changes})"


def _float(text: str) -> float:
    return float(text) if text else float("nan")


def _seeds(row: dict[str, str], v: str) -> Stated:
    m, s = _float(row[f"{v} mean"]), _float(row.get(f"{v} std", ""))
    n = int(row.get(f"{v} n") or 0)
    low, high = _float(row.get(f"{v} low", "")), _float(row.get(f"{v} high", ""))
    if math.isnan(low):  # one job (or an old report): the value itself
        low = high = m
    text = "n/a" if math.isnan(m) else (f"{m:.3f}" if n < 2 else f"{m:.3f} [{low:.3f}, {high:.3f}]")
    return Stated(m, low, high, text, s, n)


def _interval(row: dict[str, str], v: str) -> Stated:
    """A pooled cross-validation's number, with its fold jobs' SD and count where the report
    has them (older reports: the interval over images alone)."""
    value, lo, hi = _float(row[f"{v} f1"]), _float(row[f"{v} low"]), _float(row[f"{v} high"])
    text = "n/a" if math.isnan(value) else f"{value:.3f} [{lo:.3f}, {hi:.3f}]"
    std, n = _float(row.get(f"{v} fold std", "")), int(row.get(f"{v} folds") or 0)
    return Stated(value, lo, hi, text, std, n if not math.isnan(std) else 0)


def prediction_interval(
    mean: float, std: float, n: int, n_new: int, tests: int = 1, alpha: float = ALPHA
) -> tuple[float, float]:
    """Where the mean of `n_new` new jobs falls with probability 1 - alpha / tests, given the
    committed mean and std of `n` jobs of the same distribution: mean ± t(n-1) * std *
    sqrt(1/n + 1/n_new) (Bonferroni over `tests` numbers that decide)."""
    from scipy import stats

    if n < 2 or math.isnan(std):
        return mean, mean
    half = stats.t.ppf(1 - alpha / (2 * tests), n - 1) * std * math.sqrt(1 / n + 1 / n_new)
    return mean - half, mean + half


def checks(
    committed: dict[tuple[str, str], Stated],
    new: Callable[[str, str], float],
    how: str,
    n_new: int = 0,
) -> list[Check]:
    """One check per committed number, in the report's order; a number the new sweep lacks (a
    variant or class gone) fails. `how`: "identical" (every number decides, equal to the CSV's
    precision) or "statistical" (only the macro-F1 rows decide, each within its prediction
    interval, or a cross-validation's committed interval)."""
    deciding = [k for k in committed if k[0] in DECIDING_ROWS]
    out = []
    for (row, variant), stated in committed.items():
        try:
            value = new(row, variant)
        except KeyError:
            value = float("nan")
        if how == "identical":
            low = high = stated.value
            decides = True
        elif stated.n:
            low, high = prediction_interval(
                stated.value, stated.std, stated.n, n_new or stated.n, len(deciding)
            )
            decides = row in DECIDING_ROWS
        else:
            low, high, decides = stated.low, stated.high, row in DECIDING_ROWS
        out.append(Check(row, variant, stated, value, low, high, decides))
    return out


def passed(found: list[Check]) -> bool:
    return all(c.within for c in found if c.decides)


def check_table(found: list[Check], how: str) -> str:
    """A Markdown table: the committed number as stated, the new one, the difference, the range
    it must lie in, and whether it does (informative rows in brackets)."""
    need = "must equal" if how == "identical" else "must lie in"
    rows = []
    for c in found:
        new = "n/a" if math.isnan(c.new) else f"{round(c.new, 4):.3f}"  # as the CSV rounds
        within = "yes" if c.within else ("**no**" if c.decides else "no")
        if not c.decides:
            within = f"({within}, informative)"
        target = (
            f"{c.low:.4f}" if c.low == c.high else f"[{c.low:.3f}, {c.high:.3f}]"
        ) if not math.isnan(c.low) else "n/a"  # fmt: skip
        rows.append([c.row, c.variant, c.committed.text, new, _difference(c), target, within])
    head = ["class", "variant", "committed", "new", "difference", need, "within"]
    return tables.markdown(head, rows, align="llrrrrl")


def _difference(check: Check) -> str:
    """New minus committed, at the CSV's precision: `0.000` rather than `-0.000` for a number
    that only lost digits to the file's rounding."""
    diff = round(check.new, 4) - check.committed.value
    if math.isnan(diff):
        return ""
    return "0.000" if abs(diff) < 5e-4 else f"{diff:+.3f}"

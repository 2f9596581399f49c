"""The three statistical report kinds in one shape, as `taco-compare` reads them.

- *seeds* (`seeds.py`): variants trained with several seeds on one split; a cell is the mean
  over the jobs with its t-interval;
- *cross-validation* (`cross_validation.py`): a sweep over `dataset.fold`; every class's F1 on
  the pooled out-of-fold predictions, with bootstrap intervals and paired permutation tests;
- *repeated cross-validation* (`repeated.py`): the cross-validation repeated over split seeds;
  each recipe's mean over every fold with a corrected t-interval, above the pooled level.

Each is a `StudyReport`: what the console shows, what REPORT.md says, the files it writes, what
it logs to the sweep's parent run, and the number `make reproduce` compares for a row and a
variant. `study_report` picks the kind from the sweep's runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taco.reports import cross_validation, repeated, seeds
from taco.reports.cross_validation import CrossValidation, Settings
from taco.reports.repeated import Repeated
from taco.reports.seeds import Comparison


class StudyReport:
    """The contract of a report kind: every member is what `taco-compare` asks of it."""

    jobs = 0  # the jobs each number rests on (0: pooled over folds, not over seeds)

    def console(self) -> str:
        """The tables printed (and compared by `--check`)."""
        raise NotImplementedError

    def body(self) -> str:
        """What REPORT.md says between its header and the per-variant lines."""
        raise NotImplementedError

    def write(self, folder: Path) -> None:
        """Its tables, CSV and figures, into `folder`."""
        raise NotImplementedError

    def log(self, client: Any, run_id: str, folder: Path) -> None:
        """Its files and summary metrics on the sweep's parent run `run_id`."""
        raise NotImplementedError

    def value(self, row: str, variant: str) -> float:
        """The number `make reproduce` compares for `row` (a class or summary) and `variant`."""
        raise NotImplementedError


@dataclass
class SeedReport(StudyReport):
    table: Comparison

    def __post_init__(self) -> None:
        self.jobs = self.table.seeds()

    def console(self) -> str:
        return self.table.markdown()

    def body(self) -> str:
        return seeds.report_body(self.table)

    def write(self, folder: Path) -> None:
        seeds.write_outputs(self.table, folder)

    def log(self, client: Any, run_id: str, folder: Path) -> None:
        seeds.log_to_parent(client, self.table, run_id, folder)

    def value(self, row: str, variant: str) -> float:
        return self.table.mean(row, variant)


@dataclass
class CrossValidationReport(StudyReport):
    cv: CrossValidation

    def console(self) -> str:
        return cross_validation.markdown(self.cv)

    def body(self) -> str:
        return cross_validation.report_body(self.cv)

    def write(self, folder: Path) -> None:
        cross_validation.write_outputs(self.cv, folder)

    def log(self, client: Any, run_id: str, folder: Path) -> None:
        cross_validation.log_to_parent(client, self.cv, run_id, folder)

    def value(self, row: str, variant: str) -> float:
        return self.cv.f1(row, variant)


@dataclass
class RepeatedReport(CrossValidationReport):
    """The pooled cross-validation (logged as such) with the recipe level above it. `by_recipe`:
    `make reproduce` compares the recipes' means (False for a committed report from before
    recipes.csv, which states its pooled first repetition)."""

    recipes: Repeated | None = None
    by_recipe: bool = True

    def console(self) -> str:
        return (
            repeated.recipes_markdown(self.recipes) + "\n" + repeated.pairs_markdown(self.recipes)
        )

    def body(self) -> str:
        return repeated.report_section(self.recipes) + "\n" + super().body()

    def write(self, folder: Path) -> None:
        super().write(folder)
        (folder / "recipes.md").write_text(
            self.console() + "\n" + repeated.classes_markdown(self.recipes)
        )
        (folder / "recipes.csv").write_text(repeated.recipes_csv(self.recipes))

    def value(self, row: str, variant: str) -> float:
        if not self.by_recipe:
            return super().value(row, variant)
        return self.recipes.recipe(variant, row).mean  # over every fold of every repetition


def study_report(
    client: Any, table: Comparison, settings: Settings, by_recipe: bool = True
) -> StudyReport:
    """The kind the sweep's runs call for: a sweep over `dataset.fold` is a cross-validation
    (repeated when its jobs also vary the split seed), anything else a seed study."""
    if not cross_validation.is_cross_validation(table.jobs()):
        return SeedReport(table)
    cv = cross_validation.cross_validate(client, table.runs, settings)
    recipes = repeated.repeated(table, settings.alpha)
    if recipes is None:
        return CrossValidationReport(cv)
    return RepeatedReport(cv, recipes, by_recipe)

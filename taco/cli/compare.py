"""`taco-compare` (`make report`): a sweep's model x class table of test F1, from MLflow."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from taco.cli import ArgumentParser
from taco.config import default_tracking_uri, project_root
from taco.errors import DataError, cli_errors
from taco.files import staged_folder
from taco.reports import cross_validation, document, search
from taco.reports.cross_validation import is_cross_validation
from taco.reports.document import machine
from taco.reports.kinds import study_report
from taco.reports.reproduce import check_table, checks, committed_machine, committed_numbers, passed
from taco.reports.reproduce import mode as reproduce_mode
from taco.reports.runs import collect, find_parent, not_finished
from taco.reports.seeds import comparison
from taco.tracking.logged_model import register_best
from taco.tracking.stale import close_stale, describe, stale_runs
from taco.tracking.store import store_errors


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with cli_errors("taco-compare"), store_errors(args.tracking_uri or default_tracking_uri()):
        return compare(args)


def parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="taco-compare",
        description="Model x class table of test F1 for a sweep.",
    )
    parser.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument(
        "--experiment",
        help="MLflow experiment to take the latest sweep from (default with --report or --check: "
        "the experiment named after the study folder, if any; else every experiment)",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or <repo>/mlflow.db)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for comparison.md/.csv and f1_heatmap.png "
        "(default: <repo>/outputs/compare/<date>/<time>)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="a study folder (experiments/compare_models): write REPORT.md and the files there",
    )
    parser.add_argument("--command", help="the command that re-runs the study, for REPORT.md")
    parser.add_argument(
        "--check",
        type=Path,
        metavar="STUDY_DIR",
        help="compare the latest sweep of the study's experiment (default: the folder's name) "
        "with the study's committed comparison.csv, number by number (`make reproduce`). On the "
        "machine of the committed reproduce.json (CPU fingerprint, versions, threads, ISA cap, "
        "backend): identical mode, every number must be equal. Elsewhere: statistical mode, "
        "each variant's macro F1 within its 95%% prediction interval (the per-class numbers "
        "shown, informative). Exit 1 when it fails",
    )
    parser.add_argument("--no-log", action="store_true", help="do not log to the parent run")
    parser.add_argument(
        "--register",
        metavar="NAME",
        help="register the best job's model (test macro F1) as a new version of NAME in the "
        "Model Registry",
    )
    parser.add_argument(
        "--close-stale",
        action="store_true",
        help="close FAILED every RUNNING run whose process on this host is gone, then exit",
    )
    add_statistics(parser)
    return parser


def add_statistics(parser: argparse.ArgumentParser) -> None:
    """How a cross-validation's intervals and tests are computed
    (taco.reports.cross_validation)."""
    stats = parser.add_argument_group("cross-validation sweeps (over dataset.fold)")
    stats.add_argument(
        "--resamples", type=at_least(1), default=2000, help="bootstrap resamples of the images"
    )
    stats.add_argument(
        "--permutations",
        type=at_least(1),
        default=9999,
        help="permutations of the paired tests (the per-class family of 6 pairs x 23 classes "
        "needs 2,760 for any test to reach alpha 0.05 after Holm)",
    )
    stats.add_argument(
        "--alpha", type=open_unit, default=0.05, help="significance level (Holm), in (0, 1)"
    )
    stats.add_argument(
        "--stats-seed", type=at_least(0), default=0, help="seeds resamples and permutations"
    )


def default_out() -> Path:
    """Where a comparison goes unless told: beside the training runs, as Hydra dates them."""
    stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
    return project_root() / "outputs" / "compare" / f"{stamp}_{os.getpid()}"


def compare(args: argparse.Namespace) -> int:
    import mlflow

    uri = args.tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise DataError(f"no MLflow store at {uri}: run `make compare` first")
    client = mlflow.MlflowClient(uri)
    if args.close_stale:
        return close_stale_runs(client)
    parent = find_parent(client, args.parent, study_experiment(client, args))
    if search.is_search(parent):  # a hyperparameter search: its best trial, said so
        return search_table(args, client, parent)
    sweep = collect(client, parent)
    table = comparison(sweep, client)
    for line in not_finished(parent, sweep.unfinished):
        print(f"taco-compare: not finished: {line}", file=sys.stderr)
    stale = stale_runs(client)
    if stale:
        print(
            f"taco-compare: {len(stale)} run(s) RUNNING whose process is gone; close them "
            "FAILED with `taco-compare --close-stale`",
            file=sys.stderr,
        )

    folder = args.report or args.out or default_out()
    with staged_folder(folder) as staging:  # whole or not at all: a full disk leaves nothing
        shown, value = write_results(args, client, table, staging)
    print(
        f"sweep {parent.info.run_id} ({parent.info.status}): "
        f"{len(sweep.jobs())} finished job(s), {len(sweep.unfinished)} not finished"
    )
    print(shown)
    print(f"written to {folder}" + ("" if args.no_log else "; logged to the parent run"))
    if args.register:
        register(uri, table, args.register)
    return check(args.check, table, value) if args.check else 0


def search_table(args: argparse.Namespace, client: object, parent: object) -> int:
    """A search's parent: the best trial's per-class table (search.md), not a comparison of
    trials, which were chosen among on validation and are not independent variants."""
    if args.check or args.report:
        raise DataError(
            f"run {parent.info.run_id} is a hyperparameter search: --report and --check are "
            "for studies; re-run the chosen configuration as a study to report it"
        )
    text = search.markdown(client, parent)
    folder = args.out or default_out()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "search.md").write_text(text)
    if not args.no_log:
        client.log_artifact(parent.info.run_id, str(folder / "search.md"))
    print(text)
    print(f"written to {folder}" + ("" if args.no_log else "; logged to the parent run"))
    return 0


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low` (argparse says which argument, in one line)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"integer >= {low}"  # what argparse names in "invalid ... value"
    return parse


def open_unit(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def study_experiment(client: object, args: argparse.Namespace) -> str | None:
    """--experiment, else the experiment named after the study folder of --check or --report
    when there is one (a study logs to its own experiment), else None: every experiment."""
    folder = args.check or args.report
    if args.experiment or folder is None:
        return args.experiment
    name = folder.resolve().name
    return name if client.get_experiment_by_name(name) is not None else None


def write_results(
    args: argparse.Namespace, client: object, table: object, folder: Path
) -> tuple[str, Callable[[str, str], float]]:
    """The table, CSV and figure (and REPORT.md with reproduce.json, and the parent's copy): a
    seed study's means with t-intervals, or for a sweep over `dataset.fold` the pooled
    cross-validation with intervals and tests, and the recipe-level tests when it repeats the
    cross-validation over split seeds. Returns the table as printed and each number's new
    value (for --check)."""
    settings = cross_validation.Settings(
        args.resamples, args.permutations, args.alpha, args.stats_seed
    )
    # --check compares a repeated cross-validation's recipes, unless the committed report
    # predates its recipes.csv (then its pooled first repetition, as that report states it)
    by_recipe = args.check is None or (args.check / "recipes.csv").is_file()
    report = study_report(client, table, settings, by_recipe)
    report.write(folder)
    if not args.no_log:
        report.log(client, table.parent.info.run_id, folder)
    if args.report:
        study = args.report.resolve().name
        command = args.command or f"make compare STUDY={study} && make report STUDY={study}"
        text = document.report_markdown(table, study, command, report.body())
        (folder / "REPORT.md").write_text(text)  # `folder` stands for args.report here
        document.write_machine(table, folder, report.jobs)
    return report.console(), report.value


def check(study: Path, table: object, value: Callable[[str, str], float]) -> int:
    """Print the committed report's numbers against the new sweep's, in identical mode (same
    machine fingerprint, versions and settings: every number equal) or statistical mode
    (elsewhere: each variant's macro F1 within its prediction interval); 1 when it fails."""
    how, why = reproduce_mode(committed_machine(study), machine(table))

    pooled = is_cross_validation(table.jobs())  # each number stated with its own fold count
    found = checks(committed_numbers(study), value, how, 0 if pooled else table.seeds())
    deciding = [c for c in found if c.decides]
    outside = [c for c in deciding if not c.within]
    print(f"\n{study.name}: committed report against sweep {table.parent.info.run_id}")
    print(f"mode: {how} ({why})\n")
    print(check_table(found, how))
    if not passed(found):
        expected = "equal to the committed one" if how == "identical" else "within its range"
        print(
            f"taco-compare: {len(outside)} of {len(deciding)} deciding number(s) not "
            f"{expected} (marked **no** above; {how} mode)",
            file=sys.stderr,
        )
        return 1
    if how == "identical":
        print(f"identical mode: all {len(found)} numbers equal to the committed ones")
    else:
        print(
            f"statistical mode: all {len(deciding)} deciding number(s) within range "
            f"({len(found) - len(deciding)} per-class numbers shown, informative)"
        )
    return 0


def register(uri: str, comparison: object, name: str) -> None:
    import mlflow

    version = register_best(mlflow.MlflowClient(uri, registry_uri=uri), comparison, name)
    reference = f"models:/{version.name}/{version.version}"
    print(
        f"registered {reference} ({version.description}); label images with: "
        f"taco-predict --model {reference} DIR"
    )


def close_stale_runs(client: object) -> int:
    closed = close_stale(client)
    for run in closed:
        print(f"closed FAILED: {describe(run)}")
    print(f"{len(closed)} stale run(s) closed in {client.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

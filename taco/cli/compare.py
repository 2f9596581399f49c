"""`taco-compare` (`make report`): a sweep's model x class table of test F1, from MLflow."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from taco.config import default_tracking_uri, project_root
from taco.errors import DataError, cli_errors


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from taco.tracking.store import store_errors

    with cli_errors("taco-compare"), store_errors(args.tracking_uri or default_tracking_uri()):
        return compare(args)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
        "with the study's committed comparison.csv, number by number; exit 1 if any new mean "
        "falls outside the committed range: seeds' mean ± std, or a cross-validation's 95%% "
        "interval (`make reproduce`)",
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
    """How a cross-validation's intervals and tests are computed (taco.tracking.pooled)."""
    stats = parser.add_argument_group("cross-validation sweeps (over dataset.fold)")
    stats.add_argument(
        "--resamples", type=int, default=2000, help="bootstrap resamples of the images"
    )
    stats.add_argument(
        "--permutations", type=int, default=2000, help="permutations of the paired tests"
    )
    stats.add_argument("--alpha", type=float, default=0.05, help="significance level (Holm)")
    stats.add_argument("--stats-seed", type=int, default=0, help="seeds resamples and permutations")


def default_out() -> Path:
    """Where a comparison goes unless told: beside the training runs, as Hydra dates them."""
    import time

    return project_root() / "outputs" / "compare" / time.strftime("%Y-%m-%d/%H-%M-%S")


def compare(args: argparse.Namespace) -> int:
    import mlflow

    from taco.tracking.compare import collect, find_parent, not_finished
    from taco.tracking.stale import stale_runs

    uri = args.tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise DataError(f"no MLflow store at {uri}: run `make compare` first")
    client = mlflow.MlflowClient(uri)
    if args.close_stale:
        return close_stale_runs(client)
    parent = find_parent(client, args.parent, study_experiment(client, args))
    comparison = collect(client, parent)
    for line in not_finished(parent, comparison.unfinished):
        print(f"taco-compare: not finished: {line}", file=sys.stderr)
    stale = stale_runs(client)
    if stale:
        print(
            f"taco-compare: {len(stale)} run(s) RUNNING whose process is gone; close them "
            "FAILED with `taco-compare --close-stale`",
            file=sys.stderr,
        )
    folder = args.report or args.out or default_out()
    shown, value = write_results(args, client, comparison, folder)
    print(
        f"sweep {parent.info.run_id} ({parent.info.status}): "
        f"{sum(len(r) for r in comparison.runs.values())} finished job(s), "
        f"{len(comparison.unfinished)} not finished"
    )
    print(shown)
    print(f"written to {folder}" + ("" if args.no_log else "; logged to the parent run"))
    if args.register:
        register(uri, comparison, args.register)
    return check(args.check, comparison.parent.info.run_id, value) if args.check else 0


def study_experiment(client: object, args: argparse.Namespace) -> str | None:
    """--experiment, else the experiment named after the study folder of --check or --report
    when there is one (a study logs to its own experiment), else None: every experiment."""
    folder = args.check or args.report
    if args.experiment or folder is None:
        return args.experiment
    name = folder.resolve().name
    return name if client.get_experiment_by_name(name) is not None else None


def write_results(
    args: argparse.Namespace, client: object, comparison: object, folder: Path
) -> tuple[str, Callable[[str, str], float]]:
    """The table, CSV and figure (and REPORT.md, and the parent's copy): seeds' mean ± std, or
    for a sweep over `dataset.fold` the pooled cross-validation with intervals and tests. Returns
    the table as printed and each number's new value (for --check)."""
    from taco.tracking import compare as seeds
    from taco.tracking import pooled

    runs = [r for rs in comparison.runs.values() for r in rs]
    if pooled.is_cross_validation(runs):
        settings = pooled.Settings(args.resamples, args.permutations, args.alpha, args.stats_seed)
        cv = pooled.cross_validate(client, comparison.runs, settings)
        pooled.write_outputs(cv, folder)
        if not args.no_log:
            pooled.log_to_parent(client, cv, comparison.parent.info.run_id, folder)
        shown, body, value = pooled.markdown(cv), pooled.report_body(cv), cv.f1
    else:
        seeds.write_outputs(comparison, folder)
        if not args.no_log:
            seeds.log_to_parent(client, comparison, folder)
        shown, body, value = comparison.markdown(), None, comparison.mean
    if args.report:
        study = args.report.resolve().name
        command = args.command or f"make compare STUDY={study} && make report STUDY={study}"
        text = seeds.report_markdown(comparison, study, command, body)
        (args.report / "REPORT.md").write_text(text)
    return shown, value


def check(study: Path, parent_id: str, value: Callable[[str, str], float]) -> int:
    """Print the committed report's numbers against the new sweep's; 1 when any left the
    committed range (seeds' mean ± std, or the cross-validation's interval)."""
    from taco.tracking.reproduce import check_table, checks, committed_numbers

    found = checks(committed_numbers(study), value)
    outside = [c for c in found if not c.within]
    print(f"\n{study.name}: committed report against sweep {parent_id}\n")
    print(check_table(found))
    if outside:
        print(
            f"taco-compare: {len(outside)} of {len(found)} number(s) outside the committed "
            "range (marked **no** above)",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(found)} numbers within the committed range")
    return 0


def register(uri: str, comparison: object, name: str) -> None:
    import mlflow

    from taco.tracking.logged_model import register_best

    version = register_best(mlflow.MlflowClient(uri, registry_uri=uri), comparison, name)
    reference = f"models:/{version.name}/{version.version}"
    print(
        f"registered {reference} ({version.description}); label images with: "
        f"taco-predict --model {reference} DIR"
    )


def close_stale_runs(client: object) -> int:
    from taco.tracking.stale import close_stale, describe

    closed = close_stale(client)
    for run in closed:
        print(f"closed FAILED: {describe(run)}")
    print(f"{len(closed)} stale run(s) closed in {client.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

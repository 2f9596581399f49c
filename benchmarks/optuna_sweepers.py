"""Does pruning save time at equal quality? (`make bench-optuna`) The CNN tuned on the embedded
data: the same space, TPE sampler and seed for each of

- (a) taco's sweeper, no pruning;  (b) median pruning;  (c) Hyperband;
- (d) Hydra's own `hydra-optuna-sweeper` 1.3 on Optuna 2.10 (in `.venv-optuna2`, a venv that
  puts those two in front of `.venv`'s packages: they cannot live beside Optuna 5),

each over `--seeds` sampler seeds, one after the other in one invocation. Per search: epochs
trained, wall time, the best trial by validation macro F1 (a trial that completed), and that
trial's test macro F1 beside the every-class floor. Then, with 2 workers (the joblib launcher),
(b) against (d): each worker's idle share of the search's wall time, from its runs' start and end
(a batched sweeper's worker waits for the batch's slowest trial). Writes `optuna_sweepers.md`
and `best_so_far.png` (best validation macro F1 against wall time) to `--out`.

Every search gets the same reduced callbacks (no saliency maps, galleries or logged model) so
that the time measured is the search's: `CALLBACKS`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV2 = ROOT / ".venv-optuna2"
CALLBACKS = "callbacks=[model_checkpoint,early_stopping,epoch_metrics,log_predictions]"
PRUNERS = {"none": "none", "median": "median", "hyperband": "hyperband"}
LABELS = {
    "none": "(a) taco, no pruning",
    "median": "(b) taco, median pruning",
    "hyperband": "(c) taco, Hyperband",
    "hydra": "(d) hydra-optuna-sweeper 1.3 (Optuna 2.10)",
}


def python_for(variant: str) -> Path:
    return VENV2 / "bin" / "python" if variant == "hydra" else Path(sys.executable)


def make_venv2() -> None:
    """`.venv-optuna2`: hydra-optuna-sweeper 1.3 and Optuna 2.10 in front of `.venv`'s
    packages (a .pth file adds those after its own)."""
    if (VENV2 / ".ready").is_file():
        return
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV2)], check=True)
    site = next((VENV2 / "lib").glob("python*/site-packages"))
    mine = next((ROOT / ".venv" / "lib").glob("python*/site-packages"))
    (site / "zz_taco_venv.pth").write_text(f"{mine}\n")
    pip = [str(VENV2 / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, "hydra-optuna-sweeper==1.3.0", "optuna==2.10.1"], check=True)
    (VENV2 / ".ready").write_text("")


def search(folder: Path, variant: str, seed: int, args: argparse.Namespace, workers: int) -> dict:
    """One search as a user runs it; returns its wall time and where its runs are."""
    name = f"{variant}-s{seed}-w{workers}"
    command = [
        str(python_for(variant)),
        "-m",
        "taco.cli.train",
        "hparams_search=optuna",
        f"hydra.sweeper.n_trials={args.trials}",
        f"trainer.max_epochs={args.epochs}",
        f"hydra.sweeper.sampler.seed={seed}",
        "hydra.sweeper.sampler.n_startup_trials=5",
        f"hydra.sweeper.study_name={name}",
        CALLBACKS,
        f"logger.experiment_name={name}",
        f"hydra.sweep.dir={folder}/{name}",
        f"paths.data_dir={folder}/data",
        *args.extra,
    ]
    if variant == "hydra":
        command += ["hydra/sweeper=optuna", f"hydra.sweeper.n_jobs={workers}"]
        command += ["hydra.sweeper.direction=maximize"]  # its default: minimize
    else:
        command += [f"hydra/sweeper/pruner={PRUNERS[variant]}"]
    if workers > 1:
        command += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    env["TACO_OPTUNA_STORAGE"] = f"sqlite:///{folder}/optuna.db"
    began = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - began
    if done.returncode != 0:
        raise SystemExit(f"{name}: the search failed:\n{done.stderr[-3000:]}")
    return {"name": name, "variant": variant, "seed": seed, "wall": wall, "began": began}


def outcome(uri: str, run: dict, workers: int) -> dict:
    """Epochs, the best completed trial by validation, its test macro F1 and floor, the
    best-so-far curve and each worker's idle share, from the search's MLflow runs."""
    import mlflow
    import numpy as np

    from taco.reports.floors import floors
    from taco.reports.runs import load_predictions

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(run["name"]).experiment_id
    runs = client.search_runs([experiment], max_results=10000)
    trials = [r for r in runs if r.data.tags.get("taco.sweep") != "parent"]
    trials = [r for r in trials if r.info.status == "FINISHED"]
    complete = [r for r in trials if r.data.tags.get("optuna.state") != "PRUNED"]
    best = max(complete, key=lambda r: r.data.metrics["val/final/f1_macro"])
    logged = load_predictions(client, best)
    floor = floors(logged["y_true"], [str(c) for c in logged["class_names"]])
    spans = [(r.info.start_time / 1e3, r.info.end_time / 1e3) for r in trials]
    start = min(r.info.start_time for r in trials) / 1000
    curve, top = [], -1.0
    for r in sorted(complete, key=lambda r: r.info.end_time):
        top = max(top, r.data.metrics["val/final/f1_macro"])
        curve.append(((r.info.end_time / 1000 - start) / 60, top))
    return {
        **run,
        "epochs": int(sum(r.data.metrics.get("epochs_trained", 0) for r in trials)),
        "pruned": len(trials) - len(complete),
        "best_val": best.data.metrics["val/final/f1_macro"],
        "best_test": best.data.metrics["test/f1_macro"],
        "floor": floor.f1("floor: every class", "macro F1"),
        "curve": curve,
        "idle": idle_shares(spans, workers),
        "waiting": waiting_shares(run, spans, workers, folder_of(uri)),
        "spread": float(np.std([r.data.metrics["val/final/f1_macro"] for r in complete])),
    }


def folder_of(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///")).parent


def waiting_shares(run: dict, spans: list, workers: int, folder: Path) -> list[float]:
    """Each worker's share of the wall time spent with no trial to run, start-up excluded: for
    taco's sweeper, its own account (`workers.yaml`: no job process on the worker); for a
    batched sweeper, the wait for each batch's longest trial (a job's start-up is alike in a
    batch, so it cancels out of that difference)."""
    if workers < 2:
        return []
    if run["variant"] != "hydra":
        import yaml

        rows = yaml.safe_load((folder / run["name"] / "workers.yaml").read_text())["workers"]
        return [round(float(r["idle_share"]), 3) for r in rows]
    spans = sorted(spans)
    wall = max(e for _, e in spans) - spans[0][0]
    waited = [0.0] * workers
    for i in range(0, len(spans), workers):
        batch = spans[i : i + workers]
        longest = max(e - s for s, e in batch)
        for w, (s, e) in enumerate(batch):
            waited[w] += longest - (e - s)
    return [round(w / wall, 3) for w in waited]


def idle_shares(spans: list[tuple[float, float]], workers: int) -> list[float]:
    """Each worker's idle share of the search's wall time (first start to last end): the runs
    assigned to workers as a worker frees up (each run to the worker free the longest)."""
    spans = sorted(spans)
    free_at, busy = [spans[0][0]] * workers, [0.0] * workers
    for start, end in spans:
        worker = min(range(workers), key=lambda w: free_at[w] if free_at[w] <= start else 1e18)
        free_at[worker], busy[worker] = end, busy[worker] + end - start
    wall = max(e for _, e in spans) - spans[0][0]
    return [round(1 - b / wall, 3) for b in busy]


def table(results: list[dict]) -> str:
    lines = [
        "| search | seeds | epochs trained | pruned trials | wall min | best val macro F1 "
        "| its test macro F1 | every-class floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, label in LABELS.items():
        rows = [r for r in results if r["variant"] == variant and len(r["idle"]) == 1]
        if not rows:
            continue

        def mean(key: str, rows: list = rows) -> float:
            return statistics.mean(r[key] for r in rows)

        def each(key: str, form: str, rows: list = rows) -> str:
            return " / ".join(form.format(r[key]) for r in rows)

        lines.append(
            f"| {label} | {len(rows)} | {mean('epochs'):.0f} ({each('epochs', '{}')}) "
            f"| {each('pruned', '{}')} | {mean('wall') / 60:.1f} ({each('wall', '{:.0f}')} s) "
            f"| {mean('best_val'):.3f} ({each('best_val', '{:.3f}')}) "
            f"| {mean('best_test'):.3f} ({each('best_test', '{:.3f}')}) "
            f"| {mean('floor'):.3f} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colours = dict(zip(LABELS, ["C0", "C1", "C2", "C3"], strict=True))
    for r in results:
        if len(r["idle"]) != 1 or not r["curve"]:
            continue
        xs, ys = zip(*r["curve"], strict=True)
        label = LABELS[r["variant"]] if r["seed"] == min(x["seed"] for x in results) else None
        axes.step(xs, ys, where="post", color=colours[r["variant"]], alpha=0.8, label=label)
    axes.set_xlabel("wall time (min)")
    axes.set_ylabel("best validation macro F1 so far")
    axes.legend(fontsize=8)
    figure.savefig(out, dpi=110, bbox_inches="tight")


def write_report(results: list[dict], args: argparse.Namespace, folder: Path) -> None:
    """`optuna_sweepers.md` and `best_so_far.png` for the searches done so far."""
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line]
    model = names[0] if names else "?"
    given = f"; overrides: {' '.join(args.extra)}" if args.extra else ""
    text = [
        f"CNN on the embedded data: {args.trials} trials, up to {args.epochs} epochs, TPE "
        f"(5 startup trials), sampler seeds {args.seeds}{given}; {os.cpu_count()} cores, {model}",
        "",
        table(results),
        "",
        f"With {args.workers} workers (joblib launcher), sampler seed {args.seeds[0]}: each "
        "worker's share of the wall time with no trial to run (taco's sweeper: its own "
        "account; batched: the wait for each batch's longest trial), and its share outside any "
        "MLflow run (that wait plus each job process's start-up and teardown)",
        "",
        "| search | wall min | waiting share per worker | outside a run, per worker |",
        "|---|---:|---|---|",
    ]
    for r in results:
        if len(r["idle"]) > 1:
            shares = ", ".join(f"{s:.3f}" for s in r["idle"])
            waiting = ", ".join(f"{s:.3f}" for s in r["waiting"])
            text.append(f"| {LABELS[r['variant']]} | {r['wall'] / 60:.1f} | {waiting} | {shares} |")
    (folder / "optuna_sweepers.md").write_text("\n".join(text) + "\n")
    plot(results, folder / "best_so_far.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--workers", type=int, default=2, help="for the idle-share pair; 0: skip")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_optuna")
    parser.add_argument("extra", nargs="*", help="more taco-train overrides for every search")
    args = parser.parse_args()
    if "hydra" in args.variants:
        make_venv2()
    folder = args.out.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder}/mlflow.db"
    subprocess.run(  # the data set made once, outside the timed searches
        [sys.executable, "-m", "taco.cli.train", "trainer.max_epochs=1", "logger=none"]
        + [f"paths.data_dir={folder}/data", "debug=limit", *args.extra],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    results = []
    for seed in args.seeds:
        for variant in args.variants:
            run = search(folder, variant, seed, args, 1)
            results.append(outcome(uri, run, 1))
            print(f"{run['name']}: {run['wall']:.0f} s", flush=True)
            write_report(results, args, folder)  # so far: a stopped benchmark keeps its searches
    pair = [v for v in ("median", "hydra") if v in args.variants] if args.workers > 1 else []
    for variant in pair:
        run = search(folder, variant, args.seeds[0], args, args.workers)
        results.append(outcome(uri, run, args.workers))
        print(f"{run['name']}: {run['wall']:.0f} s", flush=True)
        write_report(results, args, folder)
    print((folder / "optuna_sweepers.md").read_text())
    print(f"\nwritten to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

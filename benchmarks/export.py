"""What an export costs, side by side (`make bench-export`): `make train`'s CNN, the VGG16 and
Xception heads and the Xception + random forest at their `compare_models` sizes (random init, as
the study has them), each trained once, then exported to ONNX and LiteRT (the forest: ONNX only)
at float32, float16 and int8 with `taco-export` (which checks each on the run's test split).
One row per format x quantization, plus Keras itself: macro F1 on the test split, the largest
per-class F1 drop against Keras, file size, latency of one image on one thread (p50, p95) and
throughput of batches of 32 on every core. Keras is timed
in processes of its own, with TensorFlow held to one thread, then to every core. The CPU and the
runtimes' versions head the table (`export.md` in `--out`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODELS = {
    "cnn": [],  # make train's
    "vgg16": ["model=vgg16", "model.image_size=32", "trainer.max_epochs=8", "model.weights=null"],
    "xception": [
        "model=xception",
        "model.image_size=72",
        "trainer.max_epochs=6",
        "model.weights=null",
    ],
    "xception_rf": [
        "model=xception_rf",
        "model.image_size=72",
        "trainer.max_epochs=1",
        "model.weights=null",
    ],
}
VARIANTS = [(f, q) for f in ("onnx", "litert") for q in ("none", "float16", "int8")]
ONNX_ONLY = {"xception_rf"}  # LiteRT has no tree-ensemble operator: taco-export refuses it
KERAS_TIMING = """
import json, sys, time, numpy as np
from taco.models.registry import load_model
model = load_model(sys.argv[1]); size, batch = model.image_size, int(sys.argv[2])
x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
for _ in range(2): model.predict(x)
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); model.predict(x); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def keras_row(model_dir: Path, env: dict[str, str]) -> dict:
    """Keras' own cost: one image on one TensorFlow thread, then batches of 32 on all."""
    import numpy as np

    one = {**env, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    script = [sys.executable, "-c", KERAS_TIMING, str(model_dir)]
    single = json.loads(run([*script, "1", "50"], one).strip().splitlines()[-1])
    batched = json.loads(run([*script, "32", "5"], env).strip().splitlines()[-1])
    files = [*model_dir.rglob("*.keras"), *model_dir.rglob("*.skops")]  # the forest's trees too
    size = sum(p.stat().st_size for p in files) / 1e6
    return {
        "size": size,
        "p50": 1e3 * float(np.percentile(single, 50)),
        "p95": 1e3 * float(np.percentile(single, 95)),
        "throughput": 32 / float(np.median(batched)),
    }


def export_row(run_id: str, fmt: str, quantize: str, out: Path, env: dict[str, str]) -> dict:
    """One `taco-export`, its check and cost read back."""
    folder = out / f"{fmt}-{quantize}"
    command = [str(BIN / "taco-export"), "--model", run_id, "--format", fmt]
    command += ["--quantize", quantize, "--out", str(folder), "--no-log"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    refused = done.returncode != 0 and "changed the model" in done.stderr
    if done.returncode != 0 and not refused:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-3000:]}")
    check = (folder / "check.md").read_text()  # written before the check's verdict
    cost = (folder / "cost.txt").read_text()
    rows = [line.split("|")[1:-1] for line in check.splitlines() if line.startswith("| ")]
    classes = [r for r in rows[1:] if r[0].strip() != "macro F1"]  # after the header row
    macro = next(r for r in rows if r[0].strip() == "macro F1")
    numbers = re.findall(r"[\d.]+", cost)
    return {
        "refused": refused,  # the check failed the export (a class's F1 moved beyond 0.01)
        "keras_f1": float(macro[2]),
        "f1": float(macro[3]),
        "retuned": float(macro[5]) if len(macro) > 5 else None,
        "drop": max(float(r[2]) - float(r[3]) for r in classes) if classes else 0.0,
        "size": float(numbers[0]),
        "p50": float(re.search(r"p50 ([\d.]+)", cost)[1]),
        "p95": float(re.search(r"p95 ([\d.]+)", cost)[1]),
        "throughput": float(re.search(r"([\d.]+) images/s", cost)[1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_export")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db"}
    from taco.tracking.provenance import cpu_name

    lines = [
        f"{cpu_name()}, {os.cpu_count()} cores; onnxruntime {version('onnxruntime')}, "
        f"ai-edge-litert {version('ai-edge-litert')}, tensorflow {version('tensorflow')}",
        "",
        "| model | as | macro F1 | (re-tuned) | largest class drop | MB | p50 ms | p95 ms "
        "| images/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in args.models:
        run([str(BIN / "taco-train"), *MODELS[name], f"hydra.run.dir={out}/{name}"], env)
        import mlflow

        client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
        run_id = max(
            client.search_runs([e.experiment_id for e in client.search_experiments()]),
            key=lambda r: r.info.start_time,
        ).info.run_id
        variants = [v for v in VARIANTS if name not in ONNX_ONLY or v[0] == "onnx"]
        rows = {v: export_row(run_id, *v, out / name, env) for v in variants}
        from taco.tracking.logged_model import downloaded_model

        with downloaded_model(run_id, env["MLFLOW_TRACKING_URI"]) as (model_dir, _):
            keras = keras_row(model_dir, env)
        base = rows[VARIANTS[0]]["keras_f1"]
        lines.append(
            f"| {name} | Keras | {base:.3f} | | | {keras['size']:.2f} | {keras['p50']:.2f} "
            f"| {keras['p95']:.2f} | {keras['throughput']:.0f} |"
        )
        for (fmt, quantize), r in rows.items():
            retuned = f"{r['retuned']:.3f}" if r["retuned"] is not None else ""
            mark = " (refused by the check)" if r["refused"] else ""
            lines.append(
                f"| {name} | {fmt} {quantize}{mark} | {r['f1']:.3f} | {retuned} | {r['drop']:+.3f} "
                f"| {r['size']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | {r['throughput']:.0f} |"
            )
        if name in ONNX_ONLY:
            lines.append(f"| {name} | litert (refused: no tree-ensemble operator) | | | | | | | |")
        print("\n".join(lines[-7:]), flush=True)
    (out / "export.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

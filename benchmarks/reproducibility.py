"""What the reproducibility settings cost in epoch time, measured side by side in one run.

`taco-train` (the default CNN, `logger=none`) in alternating processes: `trainer.cpu_isa=AVX2`
(the default) against `trainer.cpu_isa=null` (oneDNN's best instruction set on this CPU). The
cap is read when TensorFlow loads, so each side is a process of its own; the first epoch of each
(tracing) is dropped. Prints per-side median epoch seconds, the ratio and each side's test
macro F1 (the same for every block of a side: the runs are deterministic).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

EXE = Path(sys.executable).parent / "taco-train"
EPOCH = re.compile(r"epoch \d+/\d+ .* (\d+\.\d+)s$", re.M)
MACRO = re.compile(r"macro F1 (\d\.\d+)")


def run(isa: str, epochs: int, folder: Path) -> tuple[list[float], str]:
    command = [str(EXE), "logger=none", f"trainer.cpu_isa={isa}", f"trainer.max_epochs={epochs}"]
    command += [f"hydra.run.dir={folder}", f"paths.output_dir={folder}/out"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    text = done.stdout + done.stderr
    seconds = [float(s) for s in EPOCH.findall(text)][1:]  # the first epoch traces
    return seconds, MACRO.search(text).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--blocks", type=int, default=3, help="alternating processes per side")
    args = parser.parse_args()
    sides = {"AVX2": [], "null": []}
    scores: dict[str, set[str]] = {side: set() for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for block in range(args.blocks):
            for side in sides:
                seconds, macro = run(side, args.epochs, Path(tmp) / f"{side}-{block}")
                sides[side] += seconds
                scores[side].add(macro)
    medians = {side: statistics.median(s) for side, s in sides.items()}
    for side, median in medians.items():
        print(
            f"trainer.cpu_isa={side:5}: median epoch {median:.2f} s over {len(sides[side])} "
            f"epochs; test macro F1 {', '.join(sorted(scores[side]))}"
        )
    print(f"AVX2 / null epoch time: {medians['AVX2'] / medians['null']:.3f}")


if __name__ == "__main__":
    main()

"""What an export costs on this machine: its file size, the latency of one image on one CPU
thread (p50, p95), and the throughput of batches of 32 on every core, with the runtime's
version and the CPU (a smart bin runs one image at a time on a small core)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from taco.export.runtime import ExportedModel
from taco.tracking.provenance import cpu_name

RUNTIMES = {".onnx": "onnxruntime", ".tflite": "ai-edge-litert"}


@dataclass
class Cost:
    size_mb: float
    p50_ms: float
    p95_ms: float
    images_per_s: float
    runtime: str
    threads: int

    def line(self) -> str:
        return (
            f"{self.size_mb:.2f} MB; batch 1 on 1 thread: p50 {self.p50_ms:.2f} ms, p95 "
            f"{self.p95_ms:.2f} ms; batch 32 on {self.threads} threads: "
            f"{self.images_per_s:.0f} images/s ({self.runtime}, {cpu_name()})"
        )


def timed(predict: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int) -> list[float]:
    """Seconds per call after two warm-up calls."""
    for _ in range(2):
        predict(batch)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - began)
    return times


def measure(path: Path, image_size: int, repeats: int = 50, seed: int = 0) -> Cost:
    """The exported file's cost, measured with its runtime on random images."""
    rng = np.random.default_rng(seed)
    one = rng.integers(0, 256, (1, image_size, image_size, 3), dtype=np.uint8)
    many = rng.integers(0, 256, (32, image_size, image_size, 3), dtype=np.uint8)
    single = timed(ExportedModel(path, threads=1).predict, one, repeats)
    threads = os.cpu_count() or 1
    batched = timed(ExportedModel(path, threads=threads).predict, many, max(3, repeats // 10))
    name = RUNTIMES[path.suffix.lower()]
    return Cost(
        size_mb=path.stat().st_size / 1e6,
        p50_ms=1e3 * float(np.percentile(single, 50)),
        p95_ms=1e3 * float(np.percentile(single, 95)),
        images_per_s=32 / float(np.median(batched)),
        runtime=f"{name} {version(name)}",
        threads=threads,
    )

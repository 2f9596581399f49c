"""Time per training stage (`trainer.profiler=simple`, or `debug=profiler`), logged to the run.

Stages: `data` (reading and augmenting batches), `train_batches` (each training step, data
included), `validation` (scoring after each epoch), `checkpoint`, `logging` (every call into the
run logger), plus the coarse stages of a job (`data_setup`, `fit`, `validate`, `test`, ...).
Stages can nest, so their sum is not the wall time; `fit` and the job total are.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from taco import tables


class PassThroughProfiler:
    """No timing at all: the default."""

    enabled = False

    def section(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def add(self, name: str, seconds: float) -> None: ...

    def summary(self) -> dict[str, dict[str, float]]:
        return {}


class SimpleProfiler(PassThroughProfiler):
    enabled = True

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] += seconds
        self.counts[name] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {"seconds": total, "calls": self.counts[name], "mean": total / self.counts[name]}
            for name, total in sorted(self.totals.items(), key=lambda kv: -kv[1])
        }

    def metrics(self) -> dict[str, float]:
        out = {f"profile/{name}_seconds": s["seconds"] for name, s in self.summary().items()}
        out["profile/total_seconds"] = time.perf_counter() - self.started
        return out

    def table(self) -> str:
        total = time.perf_counter() - self.started
        rows = [
            [name, f"{s['seconds']:.2f}", int(s["calls"]), f"{1000 * s['mean']:.1f}",
             f"{100 * s['seconds'] / total:.1f}"]
            for name, s in self.summary().items()
        ]  # fmt: skip
        rows.append(["job total", f"{total:.2f}", 1, "", "100.0"])
        return tables.markdown(["stage", "total s", "calls", "mean ms", "% of job"], rows)


def make_profiler(kind: str | None) -> PassThroughProfiler:
    """`trainer.profiler` (its rule: the Trainer's annotation): `simple` times, else nothing."""
    return SimpleProfiler() if kind == "simple" else PassThroughProfiler()


class ProfiledLogger:
    """Wraps a run logger so that every call to it counts as `logging` time."""

    def __init__(self, logger: Any, profiler: PassThroughProfiler) -> None:
        self._logger, self._profiler = logger, profiler

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._logger, name)
        if not callable(attr) or name == "run":
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._profiler.section("logging"):
                return attr(*args, **kwargs)

        return timed

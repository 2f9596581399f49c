"""A dependency-free one-line progress bar on stderr (quiet when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.label, self.enabled = total, label, interactive and total > 0
        self.start, self.done = time.perf_counter(), 0

    def update(self, done: int | None = None, note: str = "") -> None:
        self.done = self.done + 1 if done is None else done
        if not self.enabled:
            return
        filled = int(30 * self.done / self.total)
        rate = self.done / max(time.perf_counter() - self.start, 1e-6)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
            f"({rate:.1f}/s){' ' + note if note else ''}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()

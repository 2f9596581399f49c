"""Progress bars (tqdm: count, rate, elapsed and ETA) on stderr, live only when it is a terminal.

Where stderr is not a terminal (a log file, CI, a sweep's job) no bar is drawn: the Trainer logs
one line per epoch instead, and the data steps log one line when they finish.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """`total` steps labelled `label`; `update()` counts one, `update(done)` sets the count."""

    def __init__(
        self,
        total: int,
        label: str,
        enabled: bool | None = None,
        unit: str = "it",
        leave: bool = True,
    ) -> None:
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.label, self.enabled = total, label, interactive and total > 0
        self.done = 0
        self._bar: Any = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=label, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True
            )

    def update(self, done: int | None = None, note: str = "") -> None:
        done = self.done + 1 if done is None else done
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

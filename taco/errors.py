"""User-facing errors: each message names the file or config key at fault and what to do."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


class TacoError(Exception):
    """An error caused by the user's input (data or config), reported without a traceback."""


class ConfigError(TacoError):
    """A config value is unknown or inconsistent."""


class DataError(TacoError):
    """A data set file (annotations, images) is missing, malformed or unreadable."""


def user_error(exc: BaseException) -> TacoError | None:
    """The TacoError behind `exc`, also when Hydra's instantiate wrapped it ("Error in call to
    target ..."): the user should read the cause, not the wrapper."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TacoError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def cli_errors(prog: str) -> Iterator[None]:
    """Every entry point (Hydra and argparse alike): a user error ends the command with one line
    `<prog>: error: <message>` on stderr and exit code 1, no traceback."""
    try:
        yield
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        if logging.getLogger().handlers:  # a Hydra job: the message also goes to its log file
            logging.getLogger(prog).error("%s", error)
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None

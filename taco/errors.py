"""User-facing errors: each message names the file or config key at fault and what to do."""

from __future__ import annotations

import contextlib
import logging
import sys
import typing
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
    `<prog>: error: <message>` on stderr, no traceback; exit code 2 for a config mistake (as
    argparse does for a bad argument), 1 for bad data."""
    try:
        yield
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        fail(prog, error)


def fail(prog: str, error: BaseException) -> typing.NoReturn:
    """Print the one line, keep it in a Hydra job's log file too, and exit."""
    record = logging.LogRecord(prog, logging.ERROR, __file__, 0, "%s", (error,), None)
    for handler in logging.getLogger().handlers:  # the log file only: stderr gets one line
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(f"{prog}: error: {error}", file=sys.stderr)
    raise SystemExit(2 if isinstance(error, ConfigError) else 1) from None

"""User-facing errors: each message names the file or config key at fault and what to do."""

import contextlib
import logging
from collections.abc import Iterator


class TacoError(Exception):
    """An error caused by the user's input (data or config), reported without a traceback."""


class ConfigError(TacoError):
    """A config value is unknown or inconsistent."""


class DataError(TacoError):
    """A data set file (annotations, images) is missing, malformed or unreadable."""


@contextlib.contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """A TacoError ends the command with one line on stderr and exit code 1, no traceback."""
    try:
        yield
    except TacoError as exc:
        logging.getLogger(prog).error("%s", exc)
        raise SystemExit(f"{prog}: error: {exc}") from None

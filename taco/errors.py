"""User-facing errors: each message names the file or config key at fault and what to do."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException


class TacoError(Exception):
    """An error caused by the user's input (data or config), reported without a traceback."""


class ConfigError(TacoError):
    """A config value is unknown or inconsistent."""


class DataError(TacoError):
    """A data set file (annotations, images) is missing, malformed or unreadable."""


class StoreError(TacoError):
    """The tracking store cannot be used (unreachable, damaged, or busy past its timeout)."""


class DiskFullError(DataError):
    """A write did not fit on its disk (or would not: checked before the work starts)."""


def user_error(exc: BaseException) -> TacoError | None:
    """The TacoError behind `exc`, also when Hydra's instantiate wrapped it ("Error in call to
    target ..."): the user should read the cause, not the wrapper."""
    return cause_of(exc, lambda e: isinstance(e, TacoError))


def cause_of(exc: BaseException | None, match: Callable[[BaseException], bool]) -> Any:
    """The first exception in `exc`'s chain of causes that `match`es, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if match(exc):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def cli_errors(prog: str) -> Iterator[None]:
    """Every entry point (Hydra and argparse alike): a user error ends the command with one line
    `<prog>: error: <message>` on stderr, no traceback; exit code 2 for a config mistake (as
    argparse does for a bad argument), 1 for bad data."""
    hydra_task_started()
    try:
        yield
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        record = logging.LogRecord(prog, logging.ERROR, __file__, 0, "%s", (error,), None)
        for handler in logging.getLogger().handlers:  # the log file only: stderr, one line
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2 if isinstance(error, ConfigError) else 1) from None


# set by `hydra_errors` (not by the user) until the command's own code starts
_ONE_LINE = "TACO_HYDRA_ONE_LINE"


@contextlib.contextmanager
def hydra_errors(prog: str) -> Iterator[None]:
    """Hydra's own errors, before the command's code runs (a key not in the config, an override
    it cannot parse, a group option that does not exist), end in one line and exit 2 as taco's
    config errors do, instead of Hydra's 7 to 10. Hydra raises them here only while
    HYDRA_FULL_ERROR is set, so it is set until the command's code starts (`cli_errors`)."""
    ours = not os.environ.get("HYDRA_FULL_ERROR")  # a user's own HYDRA_FULL_ERROR=1: all of it
    if ours:
        os.environ["HYDRA_FULL_ERROR"] = os.environ[_ONE_LINE] = "1"
    try:
        yield
    except Exception as exc:
        if ours and isinstance(exc, HydraException | OmegaConfBaseException):
            print(f"{prog}: error: {hydra_message(exc)}", file=sys.stderr)
            raise SystemExit(2) from None
        with cli_errors(prog):  # a taco error raised in a Hydra callback, one line as well
            raise
    finally:
        hydra_task_started()


def hydra_task_started() -> None:
    """From here errors are the command's: Hydra reports what escapes as it always did."""
    if os.environ.pop(_ONE_LINE, None):
        os.environ.pop("HYDRA_FULL_ERROR", None)


# what a missing plugin's config group means, and what to use instead
_PLUGIN_GROUPS = {
    "hydra/sweeper/optuna": "hydra/sweeper=optuna is Hydra's own Optuna sweeper "
    "(hydra-optuna-sweeper, Optuna 2), not installed: hparams_search=optuna uses taco's "
    "(hydra/sweeper=taco_optuna, Optuna 5)"
}


def hydra_message(exc: BaseException) -> str:
    """Hydra's message on one line: its lines joined, a list of options comma-separated, the
    OmegaConf reason after it; a missing plugin's group says what to use instead."""
    text = str(exc)
    for group, said in _PLUGIN_GROUPS.items():
        if f"Could not find '{group}'" in text:
            return said
    text = text.split("Config search path")[0]  # where Hydra looked: its folders, not the user
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    parts: list[str] = []
    for line in lines:
        if parts and parts[-1].endswith(":") and "Available options" in parts[-1]:
            parts[-1] += " " + line
        elif parts and "Available options" in parts[-1] and not line.endswith(":"):
            parts[-1] += ", " + line
        else:
            parts.append(line)
    message = " ".join(p if p.endswith((".", ":")) else p + "." for p in parts).rstrip(".")
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        message += f" ({str(cause).strip().splitlines()[0]})"
    return message

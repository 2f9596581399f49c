"""Cache files that heal: written whole or not at all, checked when opened, and the temporary
files of builds that died (`kill -9`, OOM) removed by the next build.

A temporary file is named `.<final name>.<pid>.tmp<suffix>`: the pid says whether its writer is
still alive (a parallel job of a sweep building the same cache) or gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import DiskFullError, cause_of

log = logging.getLogger(__name__)


def nearest_existing(path: Path) -> Path | None:
    """`path` or its nearest parent that exists (a folder about to be created lives there)."""
    return next((p for p in [Path(path), *Path(path).parents] if p.exists()), None)


def free_bytes(path: Path) -> int:
    """Free space of the file system that holds `path` (or its nearest existing parent)."""
    return shutil.disk_usage(nearest_existing(path) or Path("/")).free


def size_text(count: float) -> str:
    if count < 1000:
        return f"{count:.0f} B"
    for unit in ("kB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} GB"


def disk_full_error(path: Path, exc: OSError) -> Exception:
    """An out-of-space write as one line naming the file and the space left (any other OSError
    is returned unchanged)."""
    if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return exc
    return DiskFullError(
        f"no space left writing {path} ({size_text(free_bytes(path))} free on its disk): free "
        "some space or point the folder elsewhere (paths.output_dir, paths.cache_dir)"
    )


def require_space(folder: Path, needed: int, what: str, key: str) -> None:
    """Refuse, before the work starts, a write that cannot fit on `folder`'s disk."""
    free = free_bytes(folder)
    if needed > free:
        raise DiskFullError(
            f"{what} needs {size_text(needed)} in {folder}, but its disk has {size_text(free)} "
            f"free: free some space, point {key} at a larger disk, or lower model.image_size"
        )


_TEMP = re.compile(r"^\..+\.(\d+)\.tmp(\.\w+)?$")


def temp_path(final: Path) -> Path:
    """Where this process writes `final` before moving it into place."""
    return final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held on `path` (created if missing): parallel jobs of a sweep do a
    one-time step (writing the data set, creating the store) once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; atomic renames still keep files whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_dead_temps(folder: Path) -> list[Path]:
    """Delete the temporary files in `folder` whose writing process is gone; returns them."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMP.match(path.name)
        if match and not pid_alive(int(match.group(1))):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                continue
    if removed:
        log.warning(
            "removed %d temporary file(s) left by builds that died: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


def open_array(path: Path, shape: tuple[int, ...] | None = None, rows: int | None = None) -> Any:
    """The memory-mapped `.npy` at `path`, or None (with a warning) when it is absent, cut short,
    unreadable or not the expected `shape` / number of `rows`: the caller rebuilds it."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        return damaged(path, f"unreadable ({exc})")
    if shape is not None and tuple(array.shape) != tuple(shape):
        return damaged(path, f"shape {array.shape}, expected {shape}")
    if rows is not None and len(array) != rows:
        return damaged(path, f"{len(array)} rows, expected {rows}")
    return array


def read_json(path: Path) -> dict | None:
    """A JSON sidecar, or None (with a warning) when it is absent, cut off or not an object."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        return damaged(path, f"unreadable ({exc})")
    return data if isinstance(data, dict) else damaged(path, "not a JSON object")


def damaged(path: Path, reason: str) -> None:
    log.warning("cache file %s is damaged (%s): rebuilding it", path, reason)
    return None


def save_array(path: Path, values: np.ndarray) -> None:
    """`np.save`, whole or absent: also with parallel jobs of a sweep writing the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, lambda tmp: np.save(tmp, values))


def save_json(path: Path, data: dict) -> None:
    """A JSON sidecar, whole or absent."""
    _replace(path, lambda tmp: tmp.write_text(json.dumps(data)))


def write_whole(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp)`, then moved to `path`: a reader never sees half a file, and a full disk is
    one line (DiskFullError) with nothing left behind."""
    _replace(path, write)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A command's output folder, written whole or not at all: its files go into a temporary
    sibling and move into `final` once every one is written (replacing files of the same name,
    leaving the folder's other files alone). A full disk is one line naming the file; neither a
    partial file nor the temporary folder is left."""
    final = final.absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            tmp.mkdir()
            yield tmp
        except Exception as exc:
            full = _no_space(exc)
            if full is None:
                raise
            named = Path(
                str(getattr(full, "filename", None) or final).replace(str(tmp), str(final))
            )
            shutil.rmtree(tmp, ignore_errors=True)  # first: the space reported is what is free
            raise disk_full_error(named, full) from None
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                target = final / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)  # a rename on one disk: needs no space
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _no_space(exc: BaseException) -> OSError | None:
    """The out-of-space OSError behind `exc` (a plotting or logging library may wrap it)."""
    full = (errno.ENOSPC, errno.EDQUOT)
    return cause_of(exc, lambda e: isinstance(e, OSError) and e.errno in full)


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_full_error(path, exc) from None
    finally:
        tmp.unlink(missing_ok=True)

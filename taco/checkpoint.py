"""Checkpoint files: one atomic `.ckpt` (an uncompressed npz) and how `ckpt_path` finds one.

A checkpoint holds the classifier's full training state (weights, optimizer slots, random
generator states, training stage) as arrays, plus JSON metadata: the epochs completed, every
callback's state, the MLflow run id to continue and the config fingerprint it was trained with.
It is written to a temporary name and moved into place, so a kill mid-write leaves the previous
one intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import ConfigError, DataError

LAST = "last.ckpt"
BEST = "best.ckpt"
COMPLETE = "COMPLETE"  # written beside last.ckpt when the run finished: nothing to resume
FORMAT = 1
_META = "__meta__"


def write(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    blob = np.frombuffer(json.dumps({"format": FORMAT, **meta}).encode(), dtype=np.uint8)
    with open(tmp, "wb") as f:
        np.savez(f, **{_META: blob}, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_meta(path: Path) -> dict:
    """The metadata alone (the arrays are not read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(bytes(data[_META]).decode())
    except FileNotFoundError:
        raise ConfigError(f"ckpt_path: no checkpoint at {path}") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable taco checkpoint ({exc})") from None


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    meta = read_meta(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != _META}
    return arrays, meta


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption, flattened."""
    from taco.config import flatten

    keys = ("model", "dataset", "augmentation", "seed")
    return flatten({k: config.get(k) for k in keys})


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(current))
    return [
        f"{k}: {stored.get(k)!r} in the checkpoint, {current.get(k)!r} now"
        for k in keys
        if json.dumps(stored.get(k), default=str) != json.dumps(current.get(k), default=str)
    ]


def resolve(ckpt_path: str, search_dirs: Iterable[Path], current: Mapping[str, Any]) -> Path:
    """`last` (the newest unfinished `last.ckpt` trained with this config) or a file/folder."""
    if str(ckpt_path) != "last":
        path = Path(ckpt_path).expanduser()
        if path.is_dir():
            path = path / LAST if (path / LAST).is_file() else path / "checkpoints" / LAST
        diff = differences(read_meta(path).get("fingerprint", {}), current)
        if diff:
            raise ConfigError(
                f"ckpt_path={ckpt_path}: the checkpoint was trained with a different config:\n  "
                + "\n  ".join(diff[:10])
                + "\nresume with the overrides of the interrupted run"
            )
        return path
    found = sorted(
        {p for d in search_dirs if d.is_dir() for p in d.rglob(LAST)},
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    unfinished = [p for p in found if not (p.parent / COMPLETE).exists()]
    for path in unfinished:
        if not differences(read_meta(path).get("fingerprint", {}), current):
            return path
    where = ", ".join(str(d) for d in search_dirs)
    if unfinished:
        diff = differences(read_meta(unfinished[0]).get("fingerprint", {}), current)
        raise ConfigError(
            f"ckpt_path=last: no interrupted run with this config under {where}; the newest "
            f"({unfinished[0]}) differs:\n  " + "\n  ".join(diff[:10])
        )
    raise ConfigError(
        f"ckpt_path=last: no interrupted run to resume under {where}"
        + (f" ({len(found)} finished run(s) found)" if found else "")
        + "; pass ckpt_path=<path to a .ckpt> to continue a finished one"
    )

"""Config helpers: the project root resolver used by `conf/paths`, and config flattening."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def project_root() -> Path:
    """The repository root for a source checkout (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file() and (here / "conf").is_dir():
        return here
    return Path.cwd()


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("taco_root"):
        OmegaConf.register_new_resolver("taco_root", lambda: str(project_root()))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": value}; lists are kept as values (MLflow params are strings)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


register_resolvers()

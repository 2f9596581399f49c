"""MLflow's own chatter kept off the console: its schema migrations' INFO lines ("Creating
initial MLflow database tables", alembic's), pyfunc's "Validating input example against model
signature" and the artifact download bar shown while a model is logged. A console then holds
taco's lines and the user's warnings; MLflow's warnings and errors still pass."""

from __future__ import annotations

import logging
import os

QUIETED = ("mlflow.store.db.utils", "alembic", "mlflow.pyfunc")


def quiet_mlflow() -> None:
    """Raise MLflow's chatty loggers to WARNING and turn its progress bars off (unless the user
    set `MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`); cheap, imports nothing heavy."""
    for name in QUIETED:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

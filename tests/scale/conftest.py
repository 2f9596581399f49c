"""The scale tier (`make test-scale`, and `make test-all`): real engines on 127.0.0.1 started by
`tools.engines` (PostgreSQL with an `mlflow server`, a Ray cluster, a SLURM cluster). A test skips,
in one line naming the make target, only where its engine's program is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.engines import EngineMissing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine():
    """engine(context manager) -> what it yields, or a one-line skip when it is not installed."""
    import contextlib

    with contextlib.ExitStack() as stack:

        def start(manager):
            try:
                return stack.enter_context(manager)
            except EngineMissing as err:
                pytest.skip(str(err))

        yield start

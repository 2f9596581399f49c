"""Fault suite, one sweep per sweep dir: a second sweep into a folder in use is refused with the
holder's pid and host; once the holder is gone (even by SIGKILL) the folder can be re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from taco.errors import ConfigError
from taco.sweeps.sweep_dir import hold_sweep_dir
from tests.helpers import script

EXE = script("taco-train")
HOLD = """
import sys, time
from pathlib import Path
from taco.sweeps.sweep_dir import hold_sweep_dir
hold_sweep_dir(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.subprocess
def test_a_second_sweep_into_a_folder_in_use_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(sweep)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
        cmd = [EXE, "-m", f"hydra.sweep.dir={sweep}", "seed=1,2", f"paths.data_dir={tmp_path}/d"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        (line,) = out.stderr.strip().splitlines()
        assert f"is in use by another sweep (process {holder.pid} on " in line
        assert not (tmp_path / "d").exists()  # no job started
        with pytest.raises(ConfigError, match=f"process {holder.pid}"):
            hold_sweep_dir(sweep)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    handle = hold_sweep_dir(sweep)  # its holder died: the folder is free to re-run
    assert f"process {os.getpid()}" in (sweep / ".taco_sweep.lock").read_text()
    handle.close()

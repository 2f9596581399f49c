"""Fault suite, processes: a job of a parallel sweep killed by SIGKILL costs only itself, SIGTERM
or Ctrl-C stops a sweep with every run closed and no process left, a re-run with `ckpt_path=last`
finishes only what is unfinished, and a run whose process vanished is found and closed."""

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from taco.cli.compare import main as compare_main
from taco.files import pid_alive
from tests.helpers import script

EXE = script("taco-train")
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def _cmd(tiny_overrides, tmp_path, *overrides):
    base = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    return [EXE, "-m", *base, f"hydra.sweep.dir={tmp_path}/multi", *overrides]


def _family(uri):
    """Every sweep parent (oldest first) with its children."""
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    parents = sorted(
        (r for r in runs if r.data.tags.get("taco.sweep") == "parent"),
        key=lambda r: r.info.start_time,
    )
    return [
        (p, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id])
        for p in parents
    ]


def _sigint_as_a_terminal_gives_it() -> None:
    """A shell's background job (`make test &`, nohup) ignores SIGINT, and Python keeps an
    inherited SIG_IGN: the command gets SIGINT handled, as a user's Ctrl-C finds it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_once(cmd, signum, marker="epoch 2/", count=1, wait=300):
    """Start `cmd`, send `signum` to its main process once `marker` has shown `count` times (so
    many jobs are training), return (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=_sigint_as_a_terminal_gives_it,
    )
    lines, deadline = [], time.time() + wait
    for line in proc.stdout:
        lines.append(line)
        count -= marker in line
        if count <= 0 or time.time() > deadline:
            break
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + rest


@pytest.mark.subprocess
@pytest.mark.slow  # 50 s: a joblib sweep, a job killed, the sweep run again (make test-all)
def test_a_killed_worker_costs_one_job_and_a_rerun_finishes_it(
    tmp_path, tiny_overrides, mlflow_uri, capsys
):
    die = [
        "+callbacks.die._target_=tests.helpers.SigkillAtEpoch",
        "+callbacks.die.epoch=1",
        "+callbacks.die.seed=${seed}",
        "+callbacks.die.victim=2",
    ]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    sweep = _cmd(tiny_overrides, tmp_path, *JOBLIB, "seed=1,2,3", "trainer.max_epochs=2")
    out = subprocess.run([*sweep, *die], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1
    assert "1 job(s) failed" in out.stderr and "worker died" in out.stderr
    assert "TerminatedWorkerError" not in out.stderr and "Traceback" not in out.stderr
    [(parent, children)] = _family(mlflow_uri)
    status = {c.data.tags["sweep_job"]: c for c in children}
    assert {k: c.info.status for k, c in status.items()} == {
        "0": "FINISHED",
        "1": "FAILED",
        "2": "FINISHED",
    }
    assert "killed by SIGKILL" in status["1"].data.tags["error"]
    assert parent.info.status == "FAILED" and "seed=2" in parent.data.tags["failed_jobs"]
    assert compare_main(["--no-log", "--out", str(tmp_path / "cmp")]) == 0  # the two finished
    assert "not finished: job #1 [" in capsys.readouterr().err  # and the dead one, by name

    out = subprocess.run([*sweep, "ckpt_path=last"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (out.stdout + out.stderr).count("finished before, in run") == 2  # taken, not trained
    (_, _), (parent2, children2) = _family(mlflow_uri)
    assert parent2.info.status == "FINISHED"
    assert sorted(c.info.run_id for c in children2) == sorted(c.info.run_id for c in children)
    resumed = next(c for c in children2 if c.info.run_id == status["1"].info.run_id)
    assert resumed.info.status == "FINISHED" and "epoch 1" in resumed.data.tags["resumed_from"]


@pytest.mark.subprocess
def test_sigterm_stops_a_parallel_sweep_cleanly(tmp_path, tiny_overrides, mlflow_uri, capsys):
    cmd = _cmd(tiny_overrides, tmp_path, *JOBLIB, "seed=1,2,3", "trainer.max_epochs=300")
    code, output = _signal_once(cmd, signal.SIGTERM, count=2)  # both running jobs in epoch 2
    assert code == 143
    last = output.strip().splitlines()[-1]
    assert last.startswith("taco-train: interrupted by SIGTERM; resume with: taco-train -m ")
    assert last.endswith("ckpt_path=last") and "Traceback" not in output
    [(parent, children)] = _family(mlflow_uri)
    assert parent.info.status == "KILLED"
    assert sorted(c.data.tags["sweep_job"] for c in children) == ["0", "1"]
    assert all(c.info.status == "KILLED" for c in children)
    for job in ("0", "1"):
        assert (tmp_path / "multi" / job / "checkpoints" / "last.ckpt").is_file()
    assert "job #2 [" in parent.data.tags["jobs_not_started"]
    time.sleep(2)
    assert not any(pid_alive(int(c.data.tags["pid"])) for c in children)  # nothing left behind
    with pytest.raises(SystemExit):  # nothing finished: taco-compare names every job instead
        compare_main(["--no-log", "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err
    assert "has no finished job" in err and "job #0 [" in err and "KILLED" in err
    assert "job #2 [" in err and "not started" in err


@pytest.mark.subprocess
def test_ctrl_c_stops_a_sequential_sweep_cleanly(tmp_path, tiny_overrides, mlflow_uri):
    code, output = _signal_once(
        _cmd(
            tiny_overrides,
            tmp_path,
            "seed=1,2",
            "trainer.max_epochs=300",
            "callbacks.early_stopping=null",  # training still under way when the signal lands
        ),
        signal.SIGINT,
    )
    assert code == 130, output[-4000:]
    assert output.strip().splitlines()[-1].startswith("taco-train: interrupted by SIGINT")
    assert "Traceback" not in output
    [(parent, children)] = _family(mlflow_uri)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["KILLED"]
    assert "job #1 [" in parent.data.tags["jobs_not_started"]  # the basic launcher's too


OPEN_A_RUN = """
import sys, time
from taco.tracking.mlflow_logger import MLflowLogger
with MLflowLogger(sys.argv[1], experiment_name="taco").run() as run:
    print(run.run_id, flush=True)
    time.sleep(600)
"""


@pytest.mark.subprocess
def test_a_run_whose_process_is_gone_is_reported_and_closed(tmp_path, mlflow_uri, capsys):
    proc = subprocess.Popen(
        [sys.executable, "-c", OPEN_A_RUN, mlflow_uri], stdout=subprocess.PIPE, text=True
    )
    run_id = proc.stdout.readline().strip()
    proc.kill()  # SIGKILL: nothing can close the run
    proc.wait()
    client = mlflow.MlflowClient(mlflow_uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    from taco.tracking.stale import stale_runs

    assert [r.info.run_id for r in stale_runs(client)] == [run_id]
    assert compare_main(["--close-stale"]) == 0
    assert f"closed FAILED: run {run_id}" in capsys.readouterr().out
    closed = client.get_run(run_id)
    assert closed.info.status == "FAILED" and closed.data.tags["error"].startswith(
        "stale: its process"
    )
    assert stale_runs(client) == []

"""Real engines on 127.0.0.1, for the scale tests (`make test-scale`) and `make bench-store`:
PostgreSQL in a folder of its own, an `mlflow server` over any backend, a Ray head node and a
one-node SLURM cluster. Each is a context manager that starts the real program, waits until it
answers and stops it again, leaving no process behind. A program that is not installed raises
`EngineMissing` with the make target that installs it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


class EngineMissing(RuntimeError):
    """The engine's program is not on this machine; the message names what installs it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll `check()` until it is true; fail naming `what` (and the process's exit) otherwise."""
    deadline = time.time() + seconds
    while not check():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it answered")
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not answer within {seconds:.0f} s")
        time.sleep(0.3)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


def _program(name: str, *patterns: str, install: str) -> str:
    found = shutil.which(name) or next(
        (p for pattern in patterns for p in sorted(glob.glob(pattern)) if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise EngineMissing(f"{name} is not installed: run `{install}`")
    return found


# ---------------------------------------------------------------------------- PostgreSQL
def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: there, run them as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise EngineMissing(
            "no `postgres` user to run PostgreSQL as: run `make postgresql`"
        ) from err
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres(database: str = "mlflow", user: str = "taco") -> Iterator[str]:
    """A PostgreSQL server of its own (initdb + pg_ctl) on a free loopback port, trusting local
    connections; yields the SQLAlchemy URI of a new, empty `database`."""
    initdb = _program("initdb", "/usr/lib/postgresql/*/bin/initdb", install="make postgresql")
    bindir = Path(initdb).resolve().parent
    pg_ctl, createdb = str(bindir / "pg_ctl"), str(bindir / "createdb")
    as_postgres = _as_postgres_user()
    # under /tmp, not the caller's tmp_path: pytest's base folder is closed to other users
    folder = Path(tempfile.mkdtemp(prefix="taco-postgres-", dir="/tmp"))
    data, port = folder / "data", free_port()
    if as_postgres:
        shutil.chown(folder, "postgres")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    stop = [*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]
    try:
        try:
            subprocess.run(
                [*as_postgres, initdb, "-D", str(data), "-U", user, "--auth=trust", "--no-sync"],
                **quiet,
            )
            options = f"-h 127.0.0.1 -p {port} -k {folder}"
            subprocess.run(
                [*as_postgres, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options]
                + ["-w", "-t", "60", "start"],
                **quiet,
            )
            subprocess.run(
                [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", user, database], **quiet
            )
        except subprocess.CalledProcessError as err:  # the start only: not the caller's errors
            program = Path(next(c for c in err.cmd if c.startswith("/"))).name
            raise RuntimeError(f"{program}: {err.stderr.decode()[-1500:]}") from err
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------- MLflow server
def mlflow_server_command(backend: str, artifacts: Path, port: int, workers: int = 0) -> list[str]:
    """The README's command: a server over `backend` that proxies artifacts into `artifacts`."""
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend]
    command += ["--artifacts-destination", str(artifacts), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    return command + (["--workers", str(workers)] if workers else [])


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, workers: int = 0) -> Iterator[str]:
    """`mlflow server` on a free loopback port until the block ends; yields its http:// URI."""
    port = free_port()
    log = open(artifacts.parent / f"mlflow-server-{port}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        mlflow_server_command(backend, artifacts, port, workers),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: _answers(f"{uri}/health"), 180, "mlflow server", server)
        except RuntimeError as err:
            log.flush()
            tail = Path(log.name).read_bytes()[-2000:].decode(errors="replace")
            raise RuntimeError(f"{err}: {tail}") from err
        yield uri
    finally:
        _stop_group(server)
        log.close()


def _stop_group(process: subprocess.Popen, seconds: float = 30) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ---------------------------------------------------------------------------- Ray
# what every process joining the cluster needs: token authentication on, and the cluster's token.
# Ray reads RAY_AUTH_TOKEN before ~/.ray/auth_token, so a cluster started here needs nothing in
# the home folder (a fresh machine has no token there: `ray start --head` then refused to start)
RAY_CLIENT_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),  # this process's clusters' shared secret
    "RAY_USAGE_STATS_ENABLED": "0",
}


@contextlib.contextmanager
def ray_cluster(
    cpus: int = 2, workers: int = 0, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`ray start --head` on 127.0.0.1 (plus `workers` worker nodes of 1 CPU each), no
    dashboard; yields the address a sweep connects to (`hydra.launcher.ray.init.address`).
    `env`: what its worker processes see (they inherit `ray start`'s, not the sweep's)."""
    ray = BIN / "ray"
    if not ray.exists():
        raise EngineMissing("Ray is not installed: run `make setup-ray`")
    # a short folder: Ray's sockets live under it, and a socket path has at most 107 bytes
    folder = tempfile.mkdtemp(prefix="taco-ray-", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, **RAY_CLIENT_ENV, **(env or {})}
    start = [str(ray), "start", "--node-ip-address=127.0.0.1", "--object-store-memory=200000000"]
    run = {"env": env, "check": True, "capture_output": True, "timeout": 180}
    try:
        try:
            head = [*start, "--head", f"--port={port}", f"--num-cpus={cpus}"]
            subprocess.run([*head, f"--temp-dir={folder}", "--include-dashboard=false"], **run)
            for _ in range(workers):
                subprocess.run([*start, f"--address={address}", "--num-cpus=1"], **run)
        except subprocess.CalledProcessError as err:  # the start only: not the caller's errors
            raise RuntimeError(f"ray start: {err.stderr.decode()[-1500:]}") from err
        yield address
    finally:
        subprocess.run([str(ray), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------- SLURM
SLURM_CONF = """\
ClusterName=taco
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket={munge}/munge.socket,cred_expire=10
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """A one-node SLURM cluster of this machine: munged with a key of its own, slurmctld and
    slurmd on free loopback ports, one partition `debug`. Yields the environment its clients
    (sbatch, squeue, scancel: submitit calls them) need: `SLURM_CONF`."""
    daemons = {
        name: _program(name, f"/usr/sbin/{name}", install="make slurm-wlm")
        for name in ("munged", "mungekey", "slurmctld", "slurmd")
    }
    if os.geteuid() != 0:
        raise EngineMissing("a SLURM cluster of this machine needs root: slurmd starts jobs")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    munge = folder / "munge"
    munge.mkdir(mode=0o700, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 9 // 10
    conf = folder / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=host,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            folder=folder,
            munge=munge,
            cpus=os.cpu_count(),
            memory_mb=memory_mb,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    run = {"check": True, "capture_output": True, "timeout": 60, "env": env}
    started: list[str] = []
    try:
        try:
            subprocess.run([daemons["mungekey"], "-c", "-k", str(munge / "munge.key")], **run)
            munged = [daemons["munged"], "-f", f"--key-file={munge}/munge.key"]
            munged += [f"--socket={munge}/munge.socket", f"--pid-file={munge}/munged.pid"]
            munged += [f"--log-file={munge}/munged.log", f"--seed-file={munge}/seed"]
            subprocess.run(munged, **run)
            started.append(str(munge / "munged.pid"))
            subprocess.run([daemons["slurmctld"], "-i"], **run)  # -i: no state from before
            started.append(str(folder / "slurmctld.pid"))
            subprocess.run([daemons["slurmd"]], **run)
            started.append(str(folder / "slurmd.pid"))
        except subprocess.CalledProcessError as err:  # the start only: not the caller's errors
            logs = "".join(p.read_text()[-800:] for p in folder.glob("*.log") if p.is_file())
            raise RuntimeError(f"{err.cmd[0]}: {err.stderr.decode()[-800:]} {logs}") from err
        sinfo = ["sinfo", "-h", "-o", "%t"]
        wait_until(
            lambda: (
                subprocess.run(sinfo, capture_output=True, text=True, env=env).stdout.strip()
                == "idle"
            ),
            60,
            "slurmd (node idle in sinfo)",
        )
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
        for pid_file in reversed(started):
            _kill_from(Path(pid_file))


def _kill_from(pid_file: Path, seconds: float = 30) -> None:
    """Stop the daemon whose pid `pid_file` holds, and wait until it is gone."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)

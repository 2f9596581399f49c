"""Where a run's numbers come from besides its config: the code (git commit, dirty or not), the
process that writes it (host, pid: a RUNNING run whose process is gone is stale), and the machine
(CPU and its fingerprint, GPUs, library versions: `make reproduce` expects identical numbers
only on the same)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from pathlib import Path

from taco.config import installed_versions, usable_cores
from taco.tracking.tags import Tag


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {Tag.GIT_COMMIT: commit or "unknown", Tag.GIT_DIRTY: str(dirty).lower()}


def process_tags() -> dict[str, str]:
    """Which process writes a run (a RUNNING run whose process is gone is stale), and on
    what machine (its numbers depend on it)."""
    return {Tag.HOST: socket.gethostname(), Tag.PID: str(os.getpid()), **machine_tags()}


VERSIONED = (
    "tensorflow",
    "keras",
    "jax",
    "numpy",
    "scikit-learn",
    "albumentations",
    "pillow",
    "mlflow",
)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform` knows of it elsewhere."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_tags() -> dict[str, str]:
    """What a number depends on besides the config: the CPU, its cores, the library versions
    (`taco-compare` writes them into a study's report)."""
    cpu = cpu_name()
    versions = [f"{name} {version}" for name, version in installed_versions(VERSIONED).items()]
    return {
        "cpu": f"{cpu}, {usable_cores()} cores",
        "cpu_fingerprint": cpu_fingerprint(),
        "gpu": _gpus(),
        "versions": ", ".join(versions),
    }


def cpu_fingerprint() -> str:
    """The CPU precisely enough to tell an Intel Xeon from an AMD EPYC, and one AMD generation
    from the next: vendor, family, model, stepping, and a hash of its instruction-set flags.
    Two machines with the same fingerprint, versions and thread count compute the same numbers
    (`make reproduce` then expects them identical); a model name alone ("AMD EPYC") does not
    say that."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:
                    break  # the first processor is enough: they are alike
                fields.setdefault(key, value.strip())
    except OSError:
        return f"{platform.machine()} {platform.processor() or 'unknown'}"
    flags = fields.get("flags", fields.get("Features", ""))
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    parts = [
        fields.get("vendor_id", fields.get("CPU implementer", platform.machine())),
        f"family {fields.get('cpu family', fields.get('CPU architecture', '?'))}",
        f"model {fields.get('model', fields.get('CPU part', '?'))}",
        f"stepping {fields.get('stepping', fields.get('CPU revision', '?'))}",
        f"flags {digest}",
    ]
    return ", ".join(parts)


def _gpus() -> str:
    """NVIDIA GPUs by name (`nvidia-smi -L`), or none."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "none"
    names = [line.split("(UUID")[0].strip() for line in listed.stdout.splitlines() if line]
    return "; ".join(names) if listed.returncode == 0 and names else "none"

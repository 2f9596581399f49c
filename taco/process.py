"""This process, set up before Keras loads: the Keras backend, the CPU instruction set of
TensorFlow's kernels, a job's CPU threads and cores, and TensorFlow's start-up lines kept off the
console. Each must run before the first `import keras` (or before a job builds its model), so
every command calls these first; the Trainer's own hardware choices (devices, precision, the
data-parallel strategy) are in `taco.training.hardware`.

Only the standard library loads here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from taco.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax", "torch")


def use_backend(name: str) -> None:
    """Make `name` the Keras backend of this process; it must run before Keras is imported
    (a process that already imported Keras on another backend is refused)."""
    if name not in BACKENDS:
        raise ConfigError(f"trainer.backend must be one of {BACKENDS}; got {name!r}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise ConfigError(
                f"trainer.backend={name}, but Keras was already imported on "
                f"{keras.backend.backend()} in this process: start a new one (taco-train "
                f"does) or set KERAS_BACKEND={name} before Keras is imported"
            )
        return
    import importlib.util

    if importlib.util.find_spec(name) is None:
        others = [b for b in BACKENDS if b != name and importlib.util.find_spec(b) is not None]
        hint = f"; installed here: trainer.backend={others[0]}" if others else ""
        raise ConfigError(f"trainer.backend={name}, but {name} is not installed{hint}")
    os.environ["KERAS_BACKEND"] = name


# what TensorFlow's C++ side prints at start-up on every machine, before its log level applies
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Unable to register cu",
    "TF-TRT Warning",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "NodeDef mentions attribute use_unbounded_threadpool",  # a tf.data graph from a newer Keras
)


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Hide the start-up lines TensorFlow's C++ code writes straight to stderr (file descriptor
    2, beyond Python's reach) in the code inside; every other line is passed on. Set
    TACO_NATIVE_LOGS=1 to see them all."""
    if os.environ.get("TACO_NATIVE_LOGS") == "1":
        yield
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not any(n in line for n in NATIVE_NOISE)]
            sys.stderr.write("".join(kept))


def gpu_present() -> bool:
    """An NVIDIA device node exists (no backend is imported to ask)."""
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*"))


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            line = next((x for x in handle if x.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def limit_cpu_isa(isa: str | None) -> None:
    """Cap the instruction set of TensorFlow's oneDNN kernels (`trainer.cpu_isa`): read once,
    when TensorFlow first runs one, so it is set before TensorFlow is imported."""
    if not isa or backend() != "tensorflow":
        return
    if "tensorflow" in sys.modules:
        if os.environ.get("ONEDNN_MAX_CPU_ISA") != isa:
            log.warning("trainer.cpu_isa=%s: TensorFlow is already loaded, not applied", isa)
        return
    os.environ["ONEDNN_MAX_CPU_ISA"] = isa


def import_keras() -> None:
    """Import Keras (and its backend) once, its start-up noise filtered."""
    if "keras" not in sys.modules:
        with native_noise_filtered():
            import keras  # noqa: F401


def backend() -> str:
    """The Keras backend this process runs (or will run) on, without importing Keras."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def reset_for_job(threads: int | None = None, job: int = 0) -> None:
    """Before a job builds anything: a clean Keras state (a joblib worker runs job after job),
    and `threads` CPU threads (`trainer.cpu_threads`, or a joblib job's share of the cores),
    set the way the backend takes them."""
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()
    if threads is None:
        return
    if backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # a reused worker: TensorFlow kept the counts set by its first job
    else:
        # XLA (JAX) has no thread-count setting: it sizes its pool by the cores this process
        # may run on, so job `job` gets its own `threads` of them before XLA starts
        pin_cores(threads, job)


def pin_cores(threads: int, job: int) -> None:
    """Run this process (and the augmentation workers it starts) on `threads` of its cores,
    the `job`-th block of them (Linux; elsewhere a no-op)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if threads >= len(cores):
        return
    start = (job * threads) % len(cores)
    block = (cores + cores)[start : start + threads]
    os.sched_setaffinity(0, block)
    log.info("job %d runs on cores %s", job, block)

"""This process, set up before Keras loads: the Keras backend, the CPU instruction set of
TensorFlow's kernels, a job's CPU threads and cores, and TensorFlow's start-up lines kept off the
console. Each must run before the first `import keras` (or before a job builds its model), so
every command calls these first; the Trainer's own hardware choices (devices, precision, the
data-parallel strategy) are in `taco.training.hardware`.

Only the standard library loads here.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

from taco.config import start_cores
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


# XLA's persistent cache keeps a compile when it took at least this long: the default (1 s)
# would skip most CPU compiles of this project's models, and reading one back costs milliseconds
MIN_CACHED_COMPILE_SECONDS = "0.2"


def use_compile_cache(folder: str | None) -> None:
    """XLA's persistent compilation cache under `folder` (`trainer.compile_cache`): the next
    job of a sweep, and a resumed run, load the compiled steps instead of compiling them again
    (XLA keys each entry by the program, its shapes, the compiler version and the device).
    JAX reads it from `folder/jax`; TensorFlow, whose Keras models compile with XLA on a GPU
    only, from `folder/tensorflow`. Set before the backend loads; null: no cache."""
    if not folder:
        return
    root = os.path.abspath(os.path.expanduser(str(folder)))
    if backend() == "jax":
        settings = {
            "jax_compilation_cache_dir": os.path.join(root, "jax"),
            "jax_persistent_cache_min_compile_time_secs": MIN_CACHED_COMPILE_SECONDS,
        }
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), value)  # a user's own setting wins
        if "jax" in sys.modules:  # already loaded (an in-process job): told directly
            import jax

            for name in settings:
                value = os.environ[name.upper()]
                jax.config.update(name, float(value) if "secs" in name else value)
    elif backend() == "tensorflow":
        flags = os.environ.get("TF_XLA_FLAGS", "")
        if "tf_xla_persistent_cache_directory" not in flags:
            cache = f"--tf_xla_persistent_cache_directory={os.path.join(root, 'tensorflow')}"
            os.environ["TF_XLA_FLAGS"] = f"{flags} {cache}".strip()


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


def reset_for_job(
    threads: int | None = None, job: int = 0, share: int | None = None, on_gpu: bool = False
) -> None:
    """Before a job builds anything: a clean Keras state (a joblib worker runs job after job),
    the cores that feed it, and the CPU threads of its arithmetic.

    The job's cores are all this process started with, or, in a joblib sweep of jobs side by
    side, its block of `share` of them; its augmentation workers and image decoding use all of
    that block (`feed_cores`). On the CPU, its training arithmetic gets `threads`
    (`trainer.cpu_threads`, for numbers that do not depend on the machine) set the way the
    backend takes them. On a GPU, `threads` does not apply: the host only feeds the device."""
    global _FEED_CORES
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()

    cores = start_cores()
    start = job * share if share else 0
    _FEED_CORES = _block(cores, start, share) if share else cores
    feed = f"augmentation workers and decoding on cores {core_list(_FEED_CORES)}"
    if on_gpu:
        log.info("job %d trains on the GPU (trainer.cpu_threads does not apply); %s", job, feed)
        return
    if threads is None:
        log.info("job %d trains on cores %s; %s", job, core_list(_FEED_CORES), feed)
        return
    if backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # a reused worker: TensorFlow kept the counts set by its first job
        log.info("job %d trains with %d CPU threads; %s", job, threads, feed)
    else:
        # XLA (JAX) has no thread-count setting: it sizes its pool by the cores this process
        # may run on, so the job's training gets `threads` cores from its block's first on
        # (more than the block holds when `threads` says so) before XLA starts; what it spawns
        # to feed itself widens back to the block
        training = pin_cores(_block(cores, start, threads))
        log.info("job %d trains on cores %s; %s", job, core_list(training), feed)


_FEED_CORES: list[int] | None = None  # this job's cores (reset_for_job); None: not a job


def feed_cores() -> list[int] | None:
    """The cores this job's input pipeline (augmentation workers, image decoding) may use, or
    None outside a job (then they run where this process may)."""
    return list(_FEED_CORES) if _FEED_CORES is not None else None


def use_feed_cores() -> None:
    """Move the calling thread (or a worker process at its start) onto this job's feed cores,
    out of the training's pin (Linux; elsewhere, or outside a job, nothing)."""
    cores = feed_cores()
    if cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cores)


def pin_cores(cores: list[int]) -> list[int]:
    """Run this thread, and every thread and process it starts from now on, on `cores`
    (Linux; elsewhere a no-op). Returns the cores it runs on."""
    if not hasattr(os, "sched_setaffinity"):
        return cores
    os.sched_setaffinity(0, cores)
    return sorted(os.sched_getaffinity(0))


def _block(cores: list[int], start: int, count: int) -> list[int]:
    """`count` of `cores` from position `start` on, wrapping around."""
    count = max(1, min(int(count), len(cores)))
    return sorted(cores[(start + i) % len(cores)] for i in range(count))


def core_list(cores: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8'."""
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][-1] + 1:
            runs[-1].append(core)
        else:
            runs.append([core])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def trains_on_gpu(accelerator: str | None) -> bool:
    """Whether a job will train on a GPU, known before its backend starts (nothing imported):
    the accelerator allows it, a GPU device node exists and, on JAX, a CUDA plugin is
    installed (a CPU-only JAX on a GPU machine trains on the CPU)."""
    if accelerator == "cpu" or not gpu_present():
        return False
    if backend() == "jax":
        plugins = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_plugins")
        return any(importlib.util.find_spec(name) is not None for name in plugins)
    return True

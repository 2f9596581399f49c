"""Where and in what precision a Trainer runs: `trainer.accelerator`, `devices`, `precision`.

TensorFlow decides device visibility once, at its first device use, so this is configured when
the Trainer is created, before any model or tensor exists. With more than one device the model
is built, compiled and trained under a `tf.distribute.MirroredStrategy` (synchronous data
parallelism: each batch is split across the replicas). Keras 3's own distribution API
(`keras.distribution`) supports only the JAX backend, so the TensorFlow strategy is used here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from taco.errors import ConfigError

log = logging.getLogger(__name__)

ACCELERATORS = ("auto", "cpu", "gpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


class Hardware:
    def __init__(
        self, accelerator: str = "auto", devices: int | str = "auto", precision: str = "float32"
    ) -> None:
        if accelerator not in ACCELERATORS:
            raise ConfigError(
                f"trainer.accelerator must be one of {ACCELERATORS}; got {accelerator!r}"
            )
        if precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {PRECISIONS}; got {precision!r}")
        if devices != "auto" and (not isinstance(devices, int) or devices < 1):
            raise ConfigError(f"trainer.devices must be 'auto' or a count >= 1; got {devices!r}")
        self.accelerator, self.devices, self.precision = accelerator, devices, precision
        self.strategy: Any = None
        self.device_names: list[str] = []

    def configure(self) -> None:
        """Pick the devices (and the strategy across them); call before building any model."""
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        kind = self.accelerator
        if kind == "gpu" and not gpus:
            log.warning("trainer.accelerator=gpu but TensorFlow sees no GPU: running on the CPU")
            kind = "cpu"
        if kind == "auto":
            kind = "gpu" if gpus else "cpu"
        try:
            if kind == "cpu":
                if gpus:
                    tf.config.set_visible_devices([], "GPU")
                if isinstance(self.devices, int) and self.devices > 1:
                    # replicas on logical CPUs: the data-parallel path, runnable without a GPU
                    cpu = tf.config.list_physical_devices("CPU")[0]
                    tf.config.set_logical_device_configuration(
                        cpu, [tf.config.LogicalDeviceConfiguration()] * self.devices
                    )
            else:
                for gpu in gpus:
                    tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # TensorFlow already initialised its devices
            raise ConfigError(
                f"trainer.accelerator={self.accelerator} trainer.devices={self.devices}: "
                f"TensorFlow's devices are already initialised in this process ({exc}); "
                "start a new process (taco-train does) to change them"
            ) from None
        available = [d.name for d in tf.config.list_logical_devices(kind.upper())]
        count = len(available) if self.devices == "auto" else self.devices
        if count > len(available):
            raise ConfigError(
                f"trainer.devices={self.devices} but only {len(available)} {kind.upper()} "
                f"device(s) are available: {available}"
            )
        self.device_names = available[:count]
        if count > 1:
            self.strategy = tf.distribute.MirroredStrategy(devices=self.device_names)
            log.info("data-parallel training on %d devices: %s", count, self.device_names)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and compile under this: the precision policy and the distribution strategy."""
        import keras

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
                yield
        finally:
            keras.config.set_dtype_policy(previous)


def prepare_job(threads: int | None = None) -> None:
    """Per job: a clean Keras state in a reused worker process (joblib sweeps), and `threads`
    CPU threads when several jobs share the machine."""
    import sys

    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        pass  # a reused worker: TensorFlow kept the counts set by its first job

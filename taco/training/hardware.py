"""Where and in what precision a Trainer runs: `trainer.backend`, `accelerator`, `devices`,
`precision`, on TensorFlow or JAX (Keras 3 runs the same models on both).

The backend is chosen before Keras is first imported (`taco.process.use_backend`); TensorFlow
is imported only when it is the backend. Devices are configured when the Trainer is created,
before any model or tensor exists, since both backends fix device visibility at their first
device use.
With more than one device the model is built, compiled and trained data-parallel (each batch
split across the replicas): under a `tf.distribute.MirroredStrategy` on TensorFlow and under
`keras.distribution.DataParallel` on JAX. Replicas on logical CPU devices make the path
testable without a GPU on either backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, Literal

from taco.config import usable_cores
from taco.errors import ConfigError
from taco.process import (
    BACKENDS,
    backend,
    cpu_flags,
    gpu_present,
    native_noise_filtered,
    use_backend,
)
from taco.schema import PositiveInt

log = logging.getLogger(__name__)

ACCELERATORS = ("auto", "cpu", "gpu")
# Lightning's names, and Keras' own dtype policy names, for the same three choices
PRECISIONS = {
    "32": "float32",
    "16-mixed": "mixed_float16",
    "bf16-mixed": "mixed_bfloat16",
    "float32": "float32",
    "mixed_float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
}
# the rules of these settings, stated once (the Trainer's and this constructor's annotations)
Accelerator = Literal[ACCELERATORS]
Precision = Literal[(32, *PRECISIONS)]  # YAML reads `precision: 32` as a number
Devices = Literal["auto"] | PositiveInt
Backend = Literal[BACKENDS]


# oneDNN ISAs with bfloat16 convolutions: TensorFlow's CPU kernels below them abort a
# bf16-mixed fit ("could not create a primitive descriptor"), measured on TF 2.21 with AVX2
BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL")


def check_hardware(trainer: Any) -> None:
    """What the machine cannot do, refused in one line before anything loads: data-parallel
    replicas beyond the CPU cores, and bfloat16 where TensorFlow's CPU kernels have none."""
    on_cpu = trainer.get("accelerator") == "cpu" or not gpu_present()
    devices, cores = trainer.get("devices"), usable_cores()
    if on_cpu and isinstance(devices, int) and devices > cores:
        raise ConfigError(
            f"trainer.devices={devices} on the CPU, but this process may use {cores} core(s): "
            f"set trainer.devices to at most {cores} (or auto)"
        )
    precision = PRECISIONS.get(str(trainer.get("precision")), "float32")
    if precision == "mixed_bfloat16" and on_cpu and backend() == "tensorflow":
        isa, flags = trainer.get("cpu_isa"), cpu_flags()
        if not ("avx512_bf16" in flags or "amx_bf16" in flags):
            raise ConfigError(
                "trainer.precision=bf16-mixed: this CPU has no bfloat16 instructions "
                "(avx512_bf16), so TensorFlow cannot run it; use precision=32 (or backend=jax)"
            )
        if isa and isa not in BF16_ISAS:
            raise ConfigError(
                f"trainer.precision=bf16-mixed needs oneDNN's bfloat16 kernels, which "
                f"trainer.cpu_isa={isa} excludes: set trainer.cpu_isa=AVX512_CORE_BF16 (or "
                "null), or precision=32"
            )


class Hardware:
    def __init__(
        self,
        accelerator: Accelerator = "auto",
        devices: Devices = "auto",
        precision: Precision = "32",
        backend: Backend | None = None,
    ) -> None:
        if backend:
            use_backend(backend)  # refused if Keras already runs on another backend here
        self.accelerator, self.devices = accelerator, devices
        self.precision = PRECISIONS[str(precision)]  # the Keras dtype policy
        self.strategy: Any = None  # tf.distribute.Strategy or keras.distribution.Distribution
        self.device_names: list[str] = []

    def configure(self) -> None:
        """Pick the devices (and the strategy across them); call before building any model."""
        if backend() == "jax":
            devices = self._jax_devices()
        elif backend() == "tensorflow":
            devices = self._tensorflow_devices()
        else:
            return  # torch: Keras places the model on the GPU when there is one
        self.device_names = [str(d) for d in devices]
        if len(devices) > 1:
            self.strategy = self._data_parallel(devices)
            log.info("data-parallel training on %d devices: %s", len(devices), self.device_names)

    def _count(self, available: list, kind: str) -> int:
        count = len(available) if self.devices == "auto" else self.devices
        if count > len(available):
            raise ConfigError(
                f"trainer.devices={self.devices} but only {len(available)} {kind.upper()} "
                f"device(s) are available: {[str(d) for d in available]}"
            )
        return count

    def _kind(self, has_gpu: bool) -> str:
        if self.accelerator == "gpu" and not has_gpu:
            log.warning("trainer.accelerator=gpu but %s sees no GPU: running on the CPU", backend())
            return "cpu"
        if self.accelerator == "auto":
            return "gpu" if has_gpu else "cpu"
        return self.accelerator

    def _jax_devices(self) -> list:
        """JAX's devices; N > 1 CPU devices need XLA's host device count set before JAX first
        uses a device, i.e. before any model is built."""
        if self.accelerator == "cpu" and isinstance(self.devices, int) and self.devices > 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_force_host_platform_device_count" not in flags:
                count = f"--xla_force_host_platform_device_count={self.devices}"
                os.environ["XLA_FLAGS"] = f"{flags} {count}".strip()
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        kind = self._kind(bool(gpus))
        available = gpus if kind == "gpu" else jax.devices("cpu")
        if kind == "cpu" and gpus:
            jax.config.update("jax_default_device", available[0])
        return available[: self._count(available, kind)]

    def _tensorflow_devices(self) -> list:
        import tensorflow as tf

        with native_noise_filtered():  # CUDA's "failed call to cuInit" on a machine without
            gpus = tf.config.list_physical_devices("GPU")
        kind = self._kind(bool(gpus))
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
        return available[: self._count(available, kind)]

    def _data_parallel(self, devices: list) -> Any:
        if backend() == "jax":
            import keras

            return keras.distribution.DataParallel(devices=devices)
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=devices)

    def batch_multiple(self) -> int:
        """What every batch size must be a multiple of: the replicas of a data-parallel fit
        (JAX requires it; TensorFlow's strategy on logical CPUs fails on an uneven split)."""
        return len(self.device_names) if self.strategy is not None else 1

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, compile and train under this: the precision policy and the data-parallel
        strategy (a TensorFlow strategy or a Keras distribution; both are scopes)."""
        import keras

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
                yield
        finally:
            keras.config.set_dtype_policy(previous)

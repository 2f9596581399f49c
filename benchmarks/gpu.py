"""GPU feed benchmark (`make bench-gpu`): does the model wait for its batches?

Side by side in one run on one synthetic data set built once (3,072 images, 224 px):

- The augmentation pool alone (heavy, 224 px, batch 64) with 0 (in-process), 1, 4, 8 and 16
  workers (as many as there are cores): img/s, scaling against one worker, and how busy the
  workers were (reading rows from the cache, augmenting). First, as the cheap rows, so that a
  time limit still leaves them.
- With a GPU (the Keras backend sees one; `KERAS_BACKEND=jax` on a machine without TensorFlow):
  VGG16 and Xception (`weights=None`, batch 64, `bf16-mixed`): a raw `model.fit` on uint8 arrays
  in memory (what the device can take), then the project's Trainer with augmentation none, light
  and heavy, each as img/s of its second epoch and as a ratio to the raw fit, with the row's wall
  time and the programs it added to XLA's cache. The raw fit's achieved TFLOP/s (XLA's count of
  the model's forward FLOPs per image, x3 for training) beside the card's bf16 dense peak.

Every row trains whole batches only (the last, partial one would compile a second step), and
XLA's persistent cache (`trainer.compile_cache`) is on, so a model compiles once for its rows.
Without a GPU only the pool part runs; `make bench-feed` measures the Trainer's feed on a CPU.
`--gpu` forces the GPU part (a CPU smoke run: `--gpu --images 192 --size 32 --backbones VGG16`);
`--backbones ""` runs the pool part alone, `--backbones VGG16` the faster model only (on an H200,
Xception's rows took over 3 minutes: see the README's Performance section).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import taco  # noqa: F401  (offline-friendly environment defaults)
from taco.config import usable_cores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feed import datamodule, with_augmentation  # noqa: E402

# bf16 dense tensor-core peak, TFLOP/s, by the device name JAX reports (NVIDIA's data sheets)
BF16_PEAK = {
    "H200": 989,
    "H100 PCIe": 756,
    "H100": 989,
    "A100": 312,
    "L40S": 362,
    "L4": 121,
    "A10": 125,
    "RTX 4090": 165,
}


def pool_rates(dm, counts: list[int], epochs: int) -> None:
    """Heavy augmentation alone, for each worker count: img/s over `epochs` epochs after one
    epoch of warm-up, and how busy the workers were."""
    with_augmentation(dm, "heavy")
    rates: dict[int, float] = {}
    for workers in counts:
        dm.num_workers = workers
        batches = dm.batches("train", limit_batches=full_batches(dm))
        try:
            for i in range(len(batches)):  # epoch 0: workers start, caches warm
                batches[i]
            before = batches.pool_timing()
            start = time.perf_counter()
            for epoch in range(1, epochs + 1):
                batches.set_epoch(epoch)
                for i in range(len(batches)):
                    batches[i]
            wall = time.perf_counter() - start
            after = batches.pool_timing()
        finally:
            batches.close()
        consumed = epochs * len(batches)
        rates[workers] = consumed * dm.batch_size / wall
        line = f"  {workers:2d} worker(s): {rates[workers]:7,.0f} img/s"
        if workers > 1 and 1 in rates:
            line += f"  ({rates[workers] / rates[1]:.2f}x one worker, {workers} ideal)"
        if before and after and after["batches"] > before["batches"]:
            spent = {k: after[k] - before[k] for k in ("batches", "read", "augment")}
            line += "; " + busy_line({**spent, "workers": workers}, consumed, wall)
        print(line, flush=True)


def busy_line(timing: dict, consumed: int, wall: float) -> str:
    """How busy the workers were while `consumed` batches were read in `wall` seconds: their
    mean CPU seconds per batch (reading rows, augmenting) times the batches, over the time they
    had. Below 100%: starved by the hand-off, or waiting for a core; near 100% with more CPU
    per batch than one worker spends: each worker is slower (memory bandwidth, a shared core's
    other thread, the clock)."""
    read, augment = (timing[k] / timing["batches"] for k in ("read", "augment"))
    busy = (read + augment) * consumed / (wall * timing["workers"])
    return (
        f"workers busy {busy:.0%} of the time, {1000 * (read + augment):.0f} ms CPU a batch "
        f"({read / (read + augment):.0%} reading rows)"
    )


def full_batches(dm) -> int:
    """The training part's whole batches (a partial last one would compile another step)."""
    return max(1, len(dm.rows["train"]) // dm.batch_size)


def classifier(backbone: str):
    """A new model; Keras' name counters reset first, so each row's program (and XLA's cache
    key) is the same as the last row's."""
    import functools

    import keras

    keras.backend.clear_session()
    from taco.models.keras_classifier import KerasClassifier
    from taco.models.transfer import build_transfer

    build = functools.partial(build_transfer, backbone=backbone, weights=None)
    return KerasClassifier(build, learning_rate=1e-3, head_epochs=0)  # every layer trains


def raw_rate(dm, backbone: str, precision: str) -> tuple[float, object]:
    """img/s of the second epoch of a plain `model.fit` on uint8 arrays in memory, the model
    built and compiled as the Trainer does (the same program: XLA's cache serves both)."""
    import keras

    from taco.training.hardware import Hardware

    n = full_batches(dm) * dm.batch_size
    plain = dm.batches("train", shuffle=False, augment=False)
    x, y = plain.images()[:n], plain.targets()[:n]
    model = classifier(backbone)
    with Hardware(precision=precision).scope():
        model.setup(dm.num_classes, dm.image_size, y)
    seconds: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda e, logs: seconds.__setitem__(-1, seconds[-1] + time.perf_counter()),
    )
    fit = model.model.fit
    fit(x, y, batch_size=dm.batch_size, epochs=2, shuffle=False, verbose=0, callbacks=[timer])
    return n / seconds[-1], model.model


def trainer_rate(dm, backbone: str, precision: str) -> float:
    """img/s of the second epoch through the Trainer (its training time, not validation)."""
    from taco.training.callbacks import Callback
    from taco.training.trainer import Trainer

    seconds: list[float] = []

    class Keep(Callback):
        def on_train_epoch_end(self, trainer, classifier, epoch) -> None:
            seconds.append(trainer.callback_metrics["train_seconds"])

    limit = full_batches(dm)
    trainer = Trainer(
        max_epochs=2,
        deterministic=False,
        precision=precision,
        limit_train_batches=limit,
        callbacks=[Keep()],
    )
    trainer.fit(classifier(backbone), dm)
    return limit * dm.batch_size / seconds[-1]


def forward_flops(model, size: int) -> float | None:
    """FLOPs of one image's forward pass, as XLA counts them (JAX only; None elsewhere)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]
    x = jnp.zeros((1, size, size, 3), jnp.uint8)

    def forward(t, f, x):
        return model.stateless_call(t, f, x, training=False)[0]

    try:  # the program before the GPU compiler: it turns convolutions into cuDNN calls, uncounted
        cost = jax.jit(forward).lower(trainable, fixed, x).cost_analysis()
    except Exception:
        return None
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", 0.0)) or None


def device_name() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return "a GPU"


def peak(name: str) -> tuple[str, float] | None:
    for key, value in BF16_PEAK.items():  # the longer names first in the table
        if key in name:
            return key, float(value)
    return None


def gpu_part(args: argparse.Namespace, dm, cache: Path) -> None:
    precision = "bf16-mixed"
    name = device_name()
    n = full_batches(dm) * dm.batch_size
    print(
        f"{_backend()} on {name}; {n} training images at {args.size} px, batch {args.batch}, "
        f"{precision}; {args.workers} augmentation workers",
        flush=True,
    )
    for backbone in filter(None, args.backbones.split(",")):
        started = time.perf_counter()
        raw, model = raw_rate(with_augmentation(dm, "none"), backbone, precision)
        line = f"{backbone}: raw uint8 model.fit {raw:,.0f} img/s"
        flops = forward_flops(model, args.size)
        if flops:
            achieved = 3 * flops * raw / 1e12
            line += (
                f"; {flops / 1e9:.1f} GFLOPs/img forward (XLA), x3 training: {achieved:.0f} TFLOP/s"
            )
            card = peak(name)
            if card:
                line += f" = {achieved / card[1]:.0%} of the {card[0]}'s bf16 peak {card[1]:.0f}"
        print(f"{line} ({row_cost(started, cache)})", flush=True)
        for aug in ("none", "light", "heavy"):
            row = time.perf_counter()
            rate = trainer_rate(with_augmentation(dm, aug), backbone, precision)
            print(
                f"  Trainer, augmentation {aug:5s}: {rate:7,.0f} img/s ({rate / raw:.2f} of raw; "
                f"{row_cost(row, cache)})",
                flush=True,
            )
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def row_cost(started: float, cache: Path) -> str:
    """A row's wall time and the compiled programs it added to XLA's cache (0: all reused)."""
    global _CACHED
    entries = sum(1 for _ in cache.rglob("*")) if cache.is_dir() else 0
    added, _CACHED = entries - _CACHED, entries
    return f"{time.perf_counter() - started:.0f} s, {added} new compile-cache files"


_CACHED = 0


def _backend() -> str:
    import keras

    return f"Keras {keras.__version__} on {keras.backend.backend()}"


def has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU part even without a GPU")
    parser.add_argument("--images", type=int, default=3072)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="0: one per usable core")
    parser.add_argument("--backbones", default="VGG16,Xception")
    parser.add_argument("--pool-epochs", type=int, default=3, help="measured epochs per count")
    args = parser.parse_args()
    args.workers = args.workers or usable_cores()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="taco-bench-gpu-") as tmp:
        from taco.process import use_compile_cache

        cache = Path(tmp) / "compile"
        use_compile_cache(str(cache))  # one compile per model for its rows
        dm = datamodule(Path(tmp), args.images, args.size, args.workers, args.batch)
        print(f"data: {args.images} images built in {time.perf_counter() - started:.0f} s")
        counts = sorted({0, 1, *(c for c in (4, 8, 16) if c <= args.workers), args.workers})
        print(  # first: the cheap rows, so a time limit still leaves them
            f"augmentation pool alone, heavy, {full_batches(dm) * dm.batch_size} images at "
            f"{args.size} px, batch {args.batch}, {args.pool_epochs} epochs after a warm-up one:"
        )
        pool_rates(dm, counts, args.pool_epochs)
        if args.gpu or has_gpu():
            gpu_part(args, dm, cache)
        else:
            print(f"no GPU: the Trainer's rows need one ({usable_cores()} usable cores here)")
    print(f"bench-gpu: {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()

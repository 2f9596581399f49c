"""The tiny run every training test makes: 48 small images, 32 px, two epochs (seconds)."""

from __future__ import annotations

from pathlib import Path

SETTINGS = [
    "dataset.generator.num_images=48",
    "dataset.generator.image_size=[96,72]",
    "dataset.batch_size=16",
    "dataset.num_workers=0",  # no worker processes to start for 3 batches an epoch
    "model.image_size=32",
    "model.classifier.build.filters=[8,16]",
    "model.classifier.build.dense_units=16",
    "trainer.max_epochs=2",
]


def overrides(data_dir: Path, output_dir: Path) -> list[str]:
    """The tiny run's overrides, reading data from `data_dir`, writing under `output_dir`."""
    return [f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}", *SETTINGS]

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


# the figures a default run draws to say why a class fails (1.3 s of a tiny run's 4.5): off
# unless the test looks at them (`analysis=True`); their own tests are in test_analysis.py
ANALYSIS = ["augmentation_preview", "per_class_curves", "where_it_looks", "error_gallery"]


def overrides(data_dir: Path, output_dir: Path, analysis: bool = False) -> list[str]:
    """The tiny run's overrides, reading data from `data_dir`, writing under `output_dir`."""
    lean = [] if analysis else [f"++callbacks.{name}=null" for name in ANALYSIS]
    return [f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}", *SETTINGS, *lean]

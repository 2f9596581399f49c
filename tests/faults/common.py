"""Shared by the fault suite: a small TACO-format data set on disk to damage, and a look at the
MLflow store afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from taco.data.sources.synthetic import STAMP_NAME, SyntheticTaco


def taco_folder(tmp_path: Path, num_images: int = 24) -> Path:
    """A real-data folder (annotations.json + image folders, no generator) to break."""
    root = tmp_path / "taco"
    SyntheticTaco(num_images=num_images, seed=0, image_size=(96, 72)).write(root)
    (root / STAMP_NAME).unlink(missing_ok=True)
    return root


def edit_annotations(root: Path, change) -> dict:
    path = root / "annotations.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return doc


def taco_overrides(tmp_path: Path, root: Path) -> list[str]:
    return [
        "dataset=taco",
        f"dataset.root={root}",
        f"paths.data_dir={tmp_path}/data",
        f"paths.output_dir={tmp_path}/out",
        "dataset.batch_size=8",
        "model.image_size=32",
        "model.classifier.build.filters=[8,16]",
        "model.classifier.build.dense_units=16",
        "trainer.max_epochs=1",
    ]


def runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []

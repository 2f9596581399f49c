"""A run's data as an MLflow dataset input: the runs table's Dataset column names it, and two
runs on different annotations, splits or class maps show different digests at a glance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

PARTS = ("train", "val", "test")


def data_digest(record: Mapping[str, Any]) -> str:
    """12 hex digits of what decides a run's data: the annotations' hash, the class map and
    each part's image ids (so another split seed or fold is another digest)."""
    decides = {
        "annotations": record.get("annotation_sha256", ""),
        "classes": list(record.get("class_names", [])),
        **{part: list(record.get(part, [])) for part in PARTS},
    }
    return hashlib.sha256(json.dumps(decides, sort_keys=True).encode()).hexdigest()[:12]


def data_profile(record: Mapping[str, Any]) -> dict[str, Any]:
    """The summary MLflow shows beside the dataset: images per part, the split, the class map."""
    return {
        "images": {part: len(record.get(part, [])) for part in PARTS},
        "classes": len(record.get("class_names", [])),
        "label_level": record.get("label_level"),
        "split_seed": record.get("split_seed"),
        "fold": f"{record.get('fold')} of {record.get('folds')}" if record.get("folds") else None,
        "annotation_sha256": str(record.get("annotation_sha256", ""))[:16],
    }


def mlflow_dataset(record: Mapping[str, Any]) -> Any:
    """An `mlflow.data` dataset of metadata only (images stay where they are): name, source
    (the annotation file), digest, one boolean column per class (the class map) and a profile."""
    from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, DataType, Schema

    class TacoDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return data_profile(record)

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    raw = str(record.get("source") or record.get("dataset", ""))
    # the first kind that reads it (a local path matches two registrations of one kind)
    first = [kind for kind in get_registered_sources() if kind._can_resolve(raw)][:1]
    source = resolve_dataset_source(raw, candidate_sources=first or None)
    schema = Schema([ColSpec(DataType.boolean, name) for name in record.get("class_names", [])])
    return TacoDataset(
        source, name=str(record.get("dataset", "")), digest=data_digest(record), schema=schema
    )

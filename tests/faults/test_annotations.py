"""Fault suite, annotations: fields of the wrong type are named by image or annotation id and
field before a run opens; images without annotations are counted, reported and logged, kept as
all-negative or dropped."""

import logging

import pytest

from taco.config import build
from taco.errors import DataError
from taco.training.job import train
from tests.faults.common import edit_annotations, runs, taco_folder, taco_overrides


def test_wrong_typed_fields_name_the_id_and_field(compose_cfg, tmp_path, mlflow_uri):
    root = taco_folder(tmp_path)

    def damage(doc):
        doc["images"][0]["width"] = "wide"
        doc["images"][1]["file_name"] = None
        doc["annotations"][2]["category_id"] = [5]

    doc = edit_annotations(root, damage)
    with pytest.raises(DataError) as err:
        train(compose_cfg(taco_overrides(tmp_path, root)))
    text = str(err.value)
    assert str(root / "annotations.json") in text
    assert f"image {doc['images'][0]['id']}: width is 'wide', expected a positive integer" in text
    assert f"image {doc['images'][1]['id']}: file_name is None, expected a non-empty string" in text
    ann = doc["annotations"][2]["id"]
    assert f"annotation {ann}: category_id is [5], expected an integer" in text
    assert runs(mlflow_uri) == []  # refused before a run opened: nothing RUNNING, nothing lost


def test_images_without_annotations_are_counted_kept_or_dropped(compose_cfg, tmp_path, caplog):
    root = taco_folder(tmp_path)
    doc = edit_annotations(
        root,
        lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] % 2 == 0]),
    )
    bare = {im["id"] for im in doc["images"]} - {a["image_id"] for a in doc["annotations"]}
    assert len(bare) >= 10
    with caplog.at_level(logging.WARNING):
        kept = build(compose_cfg(taco_overrides(tmp_path, root)).dataset)
        kept.check()
    assert f"{len(bare)} of 24 images have no annotation: kept as all-negative" in caplog.text
    assert len(kept.load_labels()) == 24
    assert sorted(kept.load_labels().meta["unlabeled_ids"]) == sorted(bare)
    kept.setup()
    tags, record = kept.record()
    assert tags["images_unlabeled"] == f"{len(bare)} (keep)"  # logged with every run
    assert sorted(record["unlabeled"]["image_ids"]) == sorted(bare)

    dropped = build(
        compose_cfg([*taco_overrides(tmp_path, root), "dataset.unlabeled=drop"]).dataset
    )
    dropped.check()
    assert len(dropped.load_labels()) == 24 - len(bare)
    assert not set(dropped.load_labels().image_ids) & bare


def test_one_photo_under_two_image_ids_is_refused_before_a_run(compose_cfg, tmp_path, mlflow_uri):
    root = taco_folder(tmp_path)

    def twice(doc):  # the second entry could put the same photo in train and in test
        doc["images"][5]["file_name"] = doc["images"][3]["file_name"]

    doc = edit_annotations(root, twice)
    with pytest.raises(DataError) as err:
        train(compose_cfg(taco_overrides(tmp_path, root)))
    ids = f"{doc['images'][3]['id']}, {doc['images'][5]['id']}"
    assert f"{doc['images'][3]['file_name']} is listed by 2 images (ids {ids})" in str(err.value)
    assert runs(mlflow_uri) == []


def test_repeated_annotation_ids_and_bad_geometry_are_counted_in_warnings(tmp_path, caplog):
    from taco.data.coco import load_labelset

    root = taco_folder(tmp_path)

    def damage(doc):
        anns = doc["annotations"]
        anns[1]["id"] = anns[0]["id"]  # as real TACO has (ids 309 and 4040)
        anns[2]["bbox"] = ["x", 1, 2, 3]
        anns[3]["segmentation"] = [[1, 2, 3]]
        anns[4]["bbox"] = [0, 0, -5, 10]

    doc = edit_annotations(root, damage)
    with caplog.at_level(logging.WARNING):
        labels = load_labelset(root / "annotations.json", root)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"ids used more than once: {doc['annotations'][0]['id']}" in w for w in warnings)
    (geometry,) = [w for w in warnings if "malformed bbox or segmentation" in w]
    assert "3 annotation(s)" in geometry
    assert labels.meta["malformed_geometry"] == 3
    assert len(labels) == 24  # labels still come from every annotation


def test_the_real_annotations_load_with_their_two_repeated_ids(real_annotations, caplog):
    from taco.data.coco import load_labelset

    with caplog.at_level(logging.WARNING):
        labels = load_labelset(real_annotations, real_annotations.parent)
    assert len(labels) == 1500 and labels.meta["malformed_geometry"] == 0
    assert "ids used more than once: 309, 4040" in caplog.text

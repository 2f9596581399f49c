import json

import numpy as np
import pytest

from taco.data.coco import load_labelset, read_annotations
from taco.errors import ConfigError, DataError


def test_real_taco_supercategories(real_annotations):
    ls = load_labelset(real_annotations, real_annotations.parent, "supercategory")
    counts = ls.image_counts()
    assert len(ls) == 1500
    assert len(ls.class_names) == 28
    assert int((ls.labels.sum(1) > 1).sum()) == 807
    assert counts["Plastic bag & wrapper"] == 522
    assert counts["Bottle"] == 322
    assert counts["Battery"] == 2
    assert ls.labels.sum(1).min() >= 1  # every image has at least one annotation
    assert ls.labels.sum() / len(ls) == pytest.approx(1.985, abs=1e-3)


def test_real_taco_categories(real_annotations):
    ls = load_labelset(real_annotations, real_annotations.parent, "category")
    counts = ls.image_counts()
    assert len(ls.class_names) == 60
    assert counts["Plastified paper bag"] == 0
    assert sum(1 for v in counts.values() if v < 10) == 22
    assert counts["Cigarette"] == 227


def _write(tmp_path, doc):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_labels_come_from_category_id_not_list_position(tmp_path):
    # categories listed out of id order: a list-index lookup would mislabel every image
    doc = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 4, "height": 3},
            {"id": 11, "file_name": "b.jpg", "width": 4, "height": 3},
        ],
        "categories": [
            {"id": 7, "name": "Cigarette", "supercategory": "Cigarette"},
            {"id": 2, "name": "Drink can", "supercategory": "Can"},
            {"id": 5, "name": "Food Can", "supercategory": "Can"},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7},
            {"id": 2, "image_id": 11, "category_id": 2},
            {"id": 3, "image_id": 11, "category_id": 5},
        ],
    }
    path = _write(tmp_path, doc)
    sup = load_labelset(path, tmp_path, "supercategory")
    assert sup.class_names == ["Can", "Cigarette"]  # ordered by category id
    np.testing.assert_array_equal(sup.labels, [[0, 1], [1, 0]])
    cat = load_labelset(path, tmp_path, "category")
    assert cat.class_names == ["Drink can", "Food Can", "Cigarette"]
    np.testing.assert_array_equal(cat.labels, [[0, 0, 1], [1, 1, 0]])
    assert cat.paths[1] == tmp_path / "b.jpg"
    assert list(cat.image_ids) == [10, 11]


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="annotation file not found.*nope.json"):
        read_annotations(tmp_path / "nope.json")


def test_truncated_json_names_the_file(tmp_path):
    path = _write(tmp_path, '{"images": [')
    with pytest.raises(DataError, match="annotations.json is not valid JSON"):
        read_annotations(path)


def test_every_problem_is_listed_at_once(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "../../etc/passwd", "width": 1, "height": 1}],
        "categories": [{"id": 0, "name": "x", "supercategory": "x"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 99},
            {"id": 2, "image_id": 5, "category_id": 0},
        ],
    }
    with pytest.raises(DataError) as err:
        read_annotations(_write(tmp_path, doc))
    text = str(err.value)
    assert "unknown category_id 99" in text
    assert "unknown image_id 5" in text
    assert "leaves the data folder" in text


def test_missing_sections_and_fields(tmp_path):
    with pytest.raises(DataError, match="missing list 'categories'"):
        read_annotations(_write(tmp_path, {"images": [], "annotations": []}))
    doc = {"images": [{"id": 1}], "annotations": [], "categories": []}
    with pytest.raises(DataError, match=r"images\[0\] lacks file_name, width, height"):
        read_annotations(_write(tmp_path, doc))


def test_unknown_label_level(tmp_path):
    with pytest.raises(ConfigError, match="dataset.label_level"):
        load_labelset(tmp_path / "a.json", tmp_path, "species")


def test_a_path_that_goes_up_and_back_inside_is_not_said_to_leave(tmp_path):
    images = [
        {"id": 1, "file_name": "batch_1/../batch_1/000000.jpg", "width": 1, "height": 1},
        {"id": 2, "file_name": "batch_1/../../outside.jpg", "width": 1, "height": 1},
    ]
    doc = {"images": images, "categories": [{"id": 0, "name": "x", "supercategory": "x"}]}
    with pytest.raises(DataError) as err:
        read_annotations(_write(tmp_path, {**doc, "annotations": []}))
    text = str(err.value)
    assert "image 2: file_name 'batch_1/../../outside.jpg' leaves the data folder" in text
    assert "image 1" not in text
    read_annotations(_write(tmp_path, {**doc, "images": images[:1], "annotations": []}))

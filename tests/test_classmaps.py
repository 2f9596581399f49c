import numpy as np
import pytest

from taco.data.classmaps import limit_rare, resolve
from taco.data.coco import load_labelset
from taco.data.taxonomy import TACO_CATEGORIES
from taco.errors import ConfigError

CATS = [{"id": i, "name": n, "supercategory": s} for i, n, s, _ in TACO_CATEGORIES]


def test_builtin_sizes():
    assert len(resolve("supercategory", CATS).class_names) == 28
    assert len(resolve("category", CATS).class_names) == 60
    taco10 = resolve("taco10", CATS)
    assert len(taco10.class_names) == 10 and taco10.class_names[-1] == "Other"
    assert taco10.matrix.sum(1).min() == 1  # every category lands in exactly one class


def test_taco10_counts_on_real_taco(real_annotations):
    counts = load_labelset(real_annotations, real_annotations.parent, "taco10").image_counts()
    assert counts == {
        "Other": 791,
        "Plastic bag & wrapper": 522,
        "Bottle": 322,
        "Bottle cap": 235,
        "Cigarette": 227,
        "Can": 179,
        "Cup": 162,
        "Straw": 114,
        "Lid": 74,
        "Pop tab": 71,
    }


def test_user_map_from_yaml(tmp_path):
    path = tmp_path / "drinks.yaml"
    path.write_text(
        "by: category\nclasses:\n  Drink: [Drink can, Drink carton]\n  Glass: [Glass bottle]\n"
        "other: null\n"
    )
    m = resolve(str(path), CATS)
    assert m.class_names == ["Drink", "Glass"]
    y = np.zeros((2, 60), np.uint8)
    y[0, 12] = 1  # Drink can
    y[1, 59] = 1  # Cigarette: not listed, other is null -> unlabelled
    np.testing.assert_array_equal(m.apply(y), [[1, 0], [0, 0]])


def test_user_map_with_unknown_names_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("by: category\nclasses:\n  X: [Drink cann]\n")
    with pytest.raises(ConfigError, match="Drink cann"):
        resolve(str(path), CATS)
    with pytest.raises(ConfigError, match="neither one of"):
        resolve("nope", CATS)


def test_rare_merge_and_drop(real_annotations):
    merged = load_labelset(real_annotations, "/x", "supercategory", min_images=20, rare="merge")
    counts = merged.image_counts()
    assert len(merged.class_names) == 20 and "Battery" not in counts
    assert "Battery" in merged.meta["rare_merged"]
    assert counts["Other"] == 61  # images with any of the 9 rare supercategories
    dropped = load_labelset(real_annotations, "/x", "category", min_images=10, rare="drop")
    assert len(dropped.class_names) == 38  # 22 of 60 categories have fewer than 10 images


def test_limit_rare_unit():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], np.uint8)
    labels, names, affected = limit_rare(y, ["a", "b", "c"], 2, "merge")
    assert names == ["a", "Other"] and affected == ["b", "c"]
    np.testing.assert_array_equal(labels, [[1, 0], [1, 1], [0, 1]])
    from taco.schema import check_config

    node = {
        "_target_": "taco.data.datamodule.TacoDataModule",
        "name": "x",
        "root": ".",
        "rare": "ignore",
    }
    with pytest.raises(ConfigError, match="dataset.rare='ignore' is not allowed: expected 'merge'"):
        check_config({"dataset": node})  # the rule: the data module's annotation, checked once

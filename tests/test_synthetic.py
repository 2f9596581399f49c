import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from taco.data.sources.synthetic import STAMP_NAME, SyntheticTaco
from taco.data.taxonomy import TACO_CATEGORIES
from taco.errors import DataError


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "ds"
    spec = SyntheticTaco(num_images=150, image_size=(96, 72), images_per_batch=50)
    spec.write(root)
    return root, spec, json.loads((root / "annotations.json").read_text())


def test_coco_format_with_taco_taxonomy(written):
    root, _, doc = written
    assert {"images", "annotations", "categories", "info"} <= set(doc)
    cats = {c["id"]: (c["name"], c["supercategory"]) for c in doc["categories"]}
    assert len(cats) == 60 and len({s for _, s in cats.values()}) == 28
    assert cats == {i: (n, s) for i, n, s, _ in TACO_CATEGORIES}
    assert len(doc["images"]) == 150
    names = [im["file_name"] for im in doc["images"]]
    assert {n.split("/")[0] for n in names} == {"batch_1", "batch_2", "batch_3"}
    assert any(n.endswith(".JPG") for n in names) and any(n.endswith(".jpg") for n in names)
    for ann in doc["annotations"]:
        assert ann["category_id"] in cats
        x, y, w, h = ann["bbox"]
        im = doc["images"][ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"]
        assert len(ann["segmentation"][0]) >= 6 and ann["area"] > 0


def test_every_image_has_one_to_four_objects_and_files_match_json(written):
    root, _, doc = written
    per_image = {im["id"]: 0 for im in doc["images"]}
    for ann in doc["annotations"]:
        per_image[ann["image_id"]] += 1
    assert min(per_image.values()) >= 1 and max(per_image.values()) <= 4
    modes, orientations, formats = set(), set(), set()
    for im in doc["images"]:
        with Image.open(root / im["file_name"]) as f:
            formats.add(f.format)
            modes.add(f.mode)
            orientations.add(f.getexif().get(274, 1))
            shown = ImageOps.exif_transpose(f)
            assert shown.size == (im["width"], im["height"])
    assert formats == {"JPEG", "PNG"}  # PNG content behind .jpg names, as in TACO
    assert "L" in modes  # some grayscale
    assert len(orientations - {1}) >= 2  # some stored rotated with an EXIF tag


def test_imbalance_follows_taco(written):
    _, _, doc = written
    sup = {c["id"]: c["supercategory"] for c in doc["categories"]}
    counts = {}
    for ann in doc["annotations"]:
        counts.setdefault(sup[ann["category_id"]], set()).add(ann["image_id"])
    n = {k: len(v) for k, v in counts.items()}
    assert n["Plastic bag & wrapper"] > n.get("Battery", 0)
    assert n["Bottle"] > n.get("Shoe", 0)


def test_deterministic_and_seed_dependent(tmp_path):
    a, b, c = (tmp_path / x for x in "abc")
    SyntheticTaco(num_images=12, image_size=(64, 48)).write(a)
    SyntheticTaco(num_images=12, image_size=(64, 48)).write(b)
    SyntheticTaco(num_images=12, image_size=(64, 48), seed=1).write(c)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "annotations.json").read_bytes() != (c / "annotations.json").read_bytes()


def test_skipped_when_current_and_rebuilt_when_changed(tmp_path):
    root = tmp_path / "ds"
    spec = SyntheticTaco(num_images=6, image_size=(64, 48))
    spec.write(root)
    stamp_time = (root / STAMP_NAME).stat().st_mtime_ns
    assert spec.is_current(root)
    spec.write(root)
    assert (root / STAMP_NAME).stat().st_mtime_ns == stamp_time  # skipped
    # a deleted image or a different spec means the folder is written again
    first = sorted(root.rglob("*.jpg")) + sorted(root.rglob("*.JPG"))
    first[0].unlink()
    assert not spec.is_current(root)
    spec.write(root)
    assert first[0].exists()
    bigger = SyntheticTaco(num_images=8, image_size=(64, 48))
    assert not bigger.is_current(root)
    bigger.write(root)
    assert len(json.loads((root / "annotations.json").read_text())["images"]) == 8
    assert not list(tmp_path.glob(".ds.tmp-*"))


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic data set"):
        SyntheticTaco(num_images=2).write(root)
    assert (root / "precious.txt").read_text() == "keep me"


def test_objects_are_drawn_where_annotated(written):
    root, _, doc = written
    im = doc["images"][0]
    pixels = np.asarray(ImageOps.exif_transpose(Image.open(root / im["file_name"])).convert("RGB"))
    assert pixels.shape == (im["height"], im["width"], 3)
    assert pixels.std() > 10  # not a blank canvas

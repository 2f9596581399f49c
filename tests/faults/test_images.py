"""Fault suite, images: a path that leaves the data root (symlinks included) and an image above
`dataset.max_pixels` are refused by name before decoding; `taco-stats` counts the images training
uses."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from taco.cli.stats import stats
from taco.config import build
from taco.errors import DataError, TacoError
from taco.training.job import train
from tests.faults.common import edit_annotations, runs, taco_folder, taco_overrides


def test_a_symlinked_folder_leaving_the_root_is_refused(compose_cfg, tmp_path, mlflow_uri):
    root = taco_folder(tmp_path)
    outside = tmp_path / "elsewhere"
    (root / "batch_1").rename(outside)
    os.symlink(outside, root / "batch_1")  # every image now resolves outside the root
    with pytest.raises(DataError) as err:
        train(compose_cfg(taco_overrides(tmp_path, root)))
    assert "24 image(s) cannot be used" in str(err.value)
    assert f"outside the data root {root.resolve()}" in str(err.value)
    assert all(r.info.status == "FAILED" for r in runs(mlflow_uri))  # none left RUNNING


def test_one_symlinked_image_is_skipped_with_skip(compose_cfg, tmp_path):
    root = taco_folder(tmp_path)
    first = sorted((root / "batch_1").iterdir())[0]
    target = tmp_path / "secret.jpg"
    first.rename(target)
    os.symlink(target, first)
    dm = build(compose_cfg([*taco_overrides(tmp_path, root), "dataset.on_bad_image=skip"]).dataset)
    dm.check()
    dm.setup()
    assert [b.path for b in dm.skipped] == [str(first)]
    assert sum(len(r) for r in dm.rows.values()) == 23


def test_an_oversized_image_is_refused_by_name_before_decoding(compose_cfg, tmp_path):
    root = taco_folder(tmp_path)
    doc = edit_annotations(root, lambda d: None)
    victim = root / doc["images"][3]["file_name"]
    Image.new("L", (10_001, 10_001)).save(victim.with_suffix(".png"), compress_level=1)
    os.replace(victim.with_suffix(".png"), victim)  # 100,020,001 pixels, above the default

    def resize(d):
        d["images"][3]["width"] = d["images"][3]["height"] = 10_001

    edit_annotations(root, resize)
    dm = build(compose_cfg(taco_overrides(tmp_path, root)).dataset)
    dm.check()
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        dm.setup()
    assert time.perf_counter() - start < 5  # read from the header, never decoded
    assert str(victim) in str(err.value)
    assert "100,020,001 pixels is above dataset.max_pixels=100,000,000" in str(err.value)


def test_stats_counts_what_training_uses(compose_cfg, tmp_path):
    root = taco_folder(tmp_path, num_images=28)
    for path in sorted((root / "batch_1").iterdir())[:4]:
        path.write_bytes(b"not an image")
    overrides = [*taco_overrides(tmp_path, root), "dataset.on_bad_image=skip"]
    report = stats(compose_cfg(overrides), tmp_path / "stats")
    dm = build(compose_cfg(overrides).dataset)
    dm.check()
    dm.setup()
    sizes = [len(dm.rows[p]) for p in ("train", "val", "test")]
    line = next(ln for ln in report.splitlines() if ln.startswith("| (images)"))
    assert [int(v) for v in line.split("|")[2:6]] == [24, *sizes]
    assert "Images skipped as unusable (dataset.on_bad_image=skip): 4" in report
    assert np.sum(sizes) == 24


def test_predict_skips_an_unreadable_image_when_asked(tmp_path, capsys):
    """`taco-predict --on-bad-image skip` labels the readable images and lists the others;
    without it the folder is refused with a hint."""
    from taco.cli.predict import predict_folder
    from taco.models.registry import LoadedModel

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 60, 10, 10)).save(folder / f"good_{i}.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    info = {"class_names": ["a", "b"], "thresholds": [0.5, 0.5], "image_size": 16}
    model = LoadedModel(info, lambda x: np.full((len(x), 2), 0.7))
    with pytest.raises(TacoError, match="--on-bad-image skip"):
        predict_folder(model, folder)
    paths, scores = predict_folder(model, folder, on_bad_image="skip")
    assert [p.name for p in paths] == ["good_0.jpg", "good_1.jpg", "good_2.jpg"]
    assert scores.shape == (3, 2)
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "broken.jpg" in err


def test_explain_names_its_own_skip_setting_for_unreadable_images(tmp_path, capfd, command):
    """taco-explain reads a folder as taco-predict does, but its hint is its own syntax
    (`on_bad_image=skip`, a key of its config), and a wrong value is refused in one line."""
    from taco.cli.predict import read_folder
    from taco.models.registry import LoadedModel

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (40, 30), (90, 10, 10)).save(folder / "good.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    info = {"class_names": ["a", "b"], "thresholds": [0.5, 0.5], "image_size": 16}
    model = LoadedModel(info, lambda x: np.full((len(x), 2), 0.7))
    explain = ("taco-explain", "on_bad_image=skip")
    with pytest.raises(TacoError, match="add on_bad_image=skip to go on"):
        read_folder(model, folder, "error", *explain)
    paths, _ = read_folder(model, folder, "skip", *explain)
    assert [p.name for p in paths] == ["good.jpg"]
    assert "taco-explain: skipped 1 unreadable image(s)" in capfd.readouterr().err

    run = f"hydra.run.dir={tmp_path}/run"
    out = command("taco-explain", f"model_dir={tmp_path}", "on_bad_image=maybe", run)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "taco-explain: error: on_bad_image='maybe' is not allowed: expected 'error' | 'skip'"
    ]

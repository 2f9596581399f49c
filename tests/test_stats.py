import numpy as np

from taco.cli.stats import class_table, cooccurrence, labels_per_image, stats


def test_counts_and_cooccurrence_units():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], np.uint8)
    np.testing.assert_array_equal(cooccurrence(y), [[2, 1, 0], [1, 2, 1], [0, 1, 1]])
    assert labels_per_image(y) == {1: 1, 2: 2}
    table = class_table(["a", "b", "c"], {"train": y[:2], "test": y[2:]})
    assert "| a        |      2 |     2 |    0 |" in table


def test_stats_on_real_taco_with_taco10(compose_cfg, tmp_path, real_annotations):
    cfg = compose_cfg(
        ["dataset=taco", f"dataset.root={real_annotations.parent}", "dataset.label_level=taco10"]
    )
    report = stats(cfg, tmp_path)
    assert "1500 images, 10 classes" in report
    assert "| Other                 |    791 |" in report
    assert "Images with more than one label:" in report
    counts = np.loadtxt(tmp_path / "cooccurrence.csv", delimiter=",", skiprows=1)
    assert counts.shape == (10, 10) and counts[-1, -1] == 791
    assert (tmp_path / "cooccurrence.png").stat().st_size > 1000


def test_stats_split_matches_training_split(compose_cfg, tmp_path, tiny_overrides):
    cfg = compose_cfg(tiny_overrides(tmp_path))
    report = stats(cfg, tmp_path / "out")
    assert "48 images, 28 classes" in report
    line = [ln for ln in report.splitlines() if ln.startswith("| (images)")][0]
    assert [int(v) for v in line.split("|")[2:6]] == [
        48,
        *_part_sizes(tiny_overrides, compose_cfg, tmp_path),
    ]


def _part_sizes(tiny_overrides, compose_cfg, tmp_path):
    from taco.config import build

    dm = build(compose_cfg(tiny_overrides(tmp_path)).dataset)
    dm.prepare_data()
    dm.setup()
    return [len(dm.labels(p)) for p in ("train", "val", "test")]

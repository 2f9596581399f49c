import numpy as np
import pytest

from taco.data.coco import load_labelset
from taco.data.split import fold_rows, split_rows
from taco.errors import ConfigError

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _labels(n=300, classes=8, seed=0):
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.05, 0.5, classes)
    y = (rng.random((n, classes)) < prevalence).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    return y


def test_same_seed_same_split_and_parts_partition_the_rows():
    y = _labels()
    a, b = split_rows(y, FRACTIONS, 3), split_rows(y, FRACTIONS, 3)
    for part in FRACTIONS:
        np.testing.assert_array_equal(a[part], b[part])
    rows = np.concatenate(list(a.values()))
    assert len(rows) == len(y) and len(set(rows.tolist())) == len(y)
    c = split_rows(y, FRACTIONS, 4)
    assert not np.array_equal(a["test"], c["test"])


def test_sizes_follow_fractions():
    parts = split_rows(_labels(), FRACTIONS, 0)
    assert abs(len(parts["train"]) - 210) <= 15
    assert abs(len(parts["val"]) - 45) <= 10 and abs(len(parts["test"]) - 45) <= 10


def test_stratified_on_real_taco(real_annotations):
    ls = load_labelset(real_annotations, real_annotations.parent)
    parts = split_rows(ls.labels, FRACTIONS, 0)
    total = ls.labels.sum(0)
    frequent = total >= 40
    for part, share in FRACTIONS.items():
        got = ls.labels[parts[part]].sum(0)[frequent] / total[frequent]
        assert np.all(np.abs(got - share) < 0.05), (part, got)
    # every class with at least 3 images lands in each part at least once... or nearly:
    rare = (total >= 6) & (total < 40)
    for part in ("val", "test"):
        assert (ls.labels[parts[part]].sum(0)[rare] > 0).mean() > 0.9


def test_stratified_beats_random_on_rare_classes():
    y = _labels(n=400, classes=12, seed=5)
    parts = split_rows(y, FRACTIONS, 0)
    share = y[parts["test"]].sum(0) / y.sum(0)
    assert np.abs(share - 0.15).max() < 0.05


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.8, "val": 0.3, "test": 0.1}, {"train": 0.8, "test": 0.2}, {"a": 1.0}],
)
def test_bad_fractions(fractions):
    with pytest.raises(ConfigError, match="dataset.split"):
        split_rows(_labels(), fractions, 0)


def test_training_seeds_share_one_test_split_unless_split_seed_changes(
    compose_cfg, tmp_path, tiny_overrides
):
    """A seed sweep's runs are scored on one test set: `seed` shuffles and augments, only
    `dataset.split_seed` chooses the parts."""
    from taco.config import build

    def parts(*overrides: str) -> dict:
        dm = build(compose_cfg([*tiny_overrides(tmp_path), *overrides]).dataset)
        dm.prepare_data()
        dm.setup()
        return dm.record()[1]

    one, two, other = parts("seed=1"), parts("seed=2"), parts("dataset.split_seed=7")
    assert one["test"] == two["test"] and one["train"] == two["train"]
    assert (one["seed"], two["seed"]) == (1, 2) and one["split_seed"] == two["split_seed"] == 42
    assert other["test"] != one["test"]


def test_folds_hold_out_every_row_once_and_tune_on_the_other_folds():
    y, k = _labels(), 5
    folds = [fold_rows(y, FRACTIONS, k, i, seed=3) for i in range(k)]
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(len(y)))  # each image held out exactly once
    for f in folds:
        assert not set(f["test"]) & (set(f["train"]) | set(f["val"]))
        assert len(set(f["train"]) | set(f["val"]) | set(f["test"])) == len(y)
        assert abs(len(f["val"]) / (len(f["train"]) + len(f["val"])) - 0.15 / 0.85) < 0.03
        # stratified: every class's share of the held-out fold is near a fifth
        share = y[f["test"]].sum(0) / y.sum(0)
        assert np.all(np.abs(share - 1 / k) < 0.08), share
    again = fold_rows(y, FRACTIONS, k, 2, seed=3)
    np.testing.assert_array_equal(again["test"], folds[2]["test"])
    assert not np.array_equal(fold_rows(y, FRACTIONS, k, 2, seed=4)["test"], folds[2]["test"])
    with pytest.raises(ConfigError, match="dataset.fold must be in 0..4"):
        fold_rows(y, FRACTIONS, k, 5, seed=3)
    with pytest.raises(ConfigError, match="dataset.folds must be at least 2"):
        fold_rows(y, FRACTIONS, 1, 0, seed=3)

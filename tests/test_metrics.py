import numpy as np
import pytest

from taco.metrics import evaluate, floors, tune_thresholds

NAMES = ["a", "b", "c"]


def test_hand_computed_case():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.2, 0.1], [0.4, 0.8, 0.0], [0.6, 0.3, 0.7], [0.1, 0.9, 0.2]])
    r = evaluate(y, s, 0.5, NAMES)
    # a: predicted rows 0, 2 -> tp 1, fp 1, fn 1; b: predicted 1, 3 -> tp 1, fp 1, fn 1
    np.testing.assert_allclose(r.precision[:2], [0.5, 0.5])
    np.testing.assert_allclose(r.recall[:2], [0.5, 0.5])
    np.testing.assert_allclose(r.f1[:2], [0.5, 0.5])
    assert list(r.support) == [2, 2, 0]
    # c has no positives: undefined, not 0 or 1, and left out of the macro average
    assert np.isnan(r.f1[2]) and np.isnan(r.recall[2])
    assert r.precision[2] == 0.0  # one false positive
    assert r.f1_macro == pytest.approx(0.5) and r.macro_classes == 2
    # micro over all: tp 2, fp 3 (a, b, c one each), fn 2 -> 2*2 / (2*2 + 3 + 2)
    assert r.f1_micro == pytest.approx(4 / 9)
    # samples: rows F1 = 1, 2/3, 0, 0 (row 3: no true labels, a false positive)
    assert r.f1_samples == pytest.approx((1 + 2 / 3) / 4)
    assert "n/a" in r.table() and "over 2/3 classes" in r.table()


def test_per_class_thresholds():
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.3, 0.2], [0.05, 0.9], [0.1, 0.1], [0.05, 0.3]])
    np.testing.assert_allclose(evaluate(y, s, [0.1, 0.5], ["a", "b"]).f1, [1.0, 1.0])


def _brute_force_best_f1(y, s):
    best = 0.0
    for t in np.unique(s):
        p = s >= t
        tp = (p & y).sum()
        best = max(best, 2 * tp / (p.sum() + y.sum()))
    return best


def test_tuned_thresholds_reach_the_best_f1_per_class():
    rng = np.random.default_rng(0)
    y = rng.random((200, 6)) < np.linspace(0.05, 0.5, 6)
    s = np.clip(y * 0.3 + rng.random((200, 6)) * 0.8, 0, 1).round(2)  # ties on purpose
    t = tune_thresholds(y, s)
    got = evaluate(y, s, t, list("abcdef")).f1
    for c in range(6):
        assert got[c] == pytest.approx(_brute_force_best_f1(y[:, c], s[:, c]))


def test_class_without_positives_keeps_default_threshold():
    y = np.array([[1, 0], [0, 0]])
    s = np.array([[0.8, 0.7], [0.1, 0.2]])
    t = tune_thresholds(y, s, default=0.5)
    assert t[1] == 0.5 and 0.1 < t[0] < 0.8


def test_floors():
    y_train = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    y_test = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    f = floors(y_train, y_test, ["a", "b"])
    # predicting everything: F1 = 2q / (1 + q) per class, q = test prevalence (0.5, 0.25)
    assert f["floor/f1_macro_all"] == pytest.approx((2 * 0.5 / 1.5 + 2 * 0.25 / 1.25) / 2)
    assert 0 <= f["floor/f1_macro_prevalence"] <= 1


def test_fast_macro_f1_matches_scikit_learn_path():
    from taco.metrics import macro_f1

    rng = np.random.default_rng(1)
    y = rng.random((80, 7)) < np.linspace(0.0, 0.4, 7)  # first class has no positives
    s = rng.random((80, 7))
    t = tune_thresholds(y, s)
    for thr in (0.5, t):
        assert macro_f1(y, s, thr) == pytest.approx(evaluate(y, s, thr, list("abcdefg")).f1_macro)


def test_a_class_with_too_few_positives_is_not_tuned_to_predict_every_image():
    rng = np.random.default_rng(3)
    y = np.zeros((200, 3), bool)
    y[:60, 0] = y[60:120, 1] = True
    y[199, 2] = True  # one positive, scored below almost every negative
    s = np.clip(y * 0.5 + rng.random((200, 3)) * 0.5, 0, 1)
    s[199, 2] = 0.02
    alone = tune_thresholds(y, s, min_positives=1)
    capped = tune_thresholds(y, s, min_positives=5)
    assert (s[:, 2] >= alone[2]).mean() >= 0.9  # fitted to its one positive: "predict all"
    # the common classes keep their own thresholds; the rare one predicts at most 2 x 1 images
    assert capped[:2] == pytest.approx(alone[:2])
    assert (s[:, 2] >= capped[2]).sum() == 2
    # a rare class whose tuned threshold is already selective keeps it
    s[199, 2] = 0.99
    assert tune_thresholds(y, s, min_positives=5)[2] == tune_thresholds(y, s)[2]

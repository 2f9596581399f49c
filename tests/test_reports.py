"""The statistics room (taco.reports): seed tables, pooled cross-validation, floors, repeated
cross-validation's corrected t-test, and the reproduce check, on fabricated numbers."""

import mlflow
import pytest

from taco.tracking.store import get_or_create_experiment  # artifacts beside the store


def test_a_win_inside_the_seed_spread_or_on_too_few_positives_is_not_bold():
    from taco.reports.seeds import Comparison

    support = {"Bottle": 30, "Can": 12, "Cup": 12, "Foil": 3}
    table = Comparison(None, ["a", "b"], classes=list(support), support=support)
    table.runs = {"a": [1, 2, 3], "b": [1, 2, 3]}  # three seeds each
    for a, b in [(0.80, 0.40), (0.82, 0.42), (0.78, 0.38)]:  # Bottle: a far ahead
        table.add("Bottle", "a", a), table.add("Bottle", "b", b)
    for a, b in [(0.50, 0.30), (0.20, 0.45), (0.65, 0.40)]:  # Can: a ahead on average only
        table.add("Can", "a", a), table.add("Can", "b", b)
    for v in ("a", "b"):  # Cup: a tie
        for value in (0.1, 0.2, 0.3):
            table.add("Cup", v, value)
    for a, b in [(0.90, 0.20), (0.91, 0.21), (0.89, 0.19)]:  # Foil: far ahead on 3 positives
        table.add("Foil", "a", a), table.add("Foil", "b", b)
    assert not table.within_noise("Bottle") and table.splits() == 1
    assert table.cell("Bottle", "a").startswith("*0.800")  # clear, but on one split: italics
    # the mean's t-interval: 0.80 ± t(2) * 0.02 / sqrt(3)
    assert table.interval("Bottle", "a") == pytest.approx((0.80 - 0.0497, 0.80 + 0.0497), abs=1e-3)
    assert "[0.750, 0.850]" in table.cell("Bottle", "a")
    assert table.best("Can") == {"a"} and table.within_noise("Can")
    assert table.cell("Can", "a").endswith("≈") and "**" not in table.cell("Can", "a")
    assert table.best("Cup") == set() and not table.within_noise("Cup")
    assert table.too_few("Foil") and table.within_noise("Foil")  # 3 positives: too few
    text = table.markdown()
    assert "| classes clear on this split |  | 1 | 0 |" in text
    assert "| best but within noise (≈) |  | 2 | 0 |" in text
    table.runs = {v: [_Run({"dataset.split_seed": str(s)}) for s in (1, 2, 3)] for v in "ab"}
    assert table.splits() == 3 and table.cell("Bottle", "a").startswith("**0.800")
    assert "| classes won (alone) |  | 1 | 0 |" in table.markdown()


class _Run:
    """A job as the seed table reads it: its logged params."""

    def __init__(self, params: dict) -> None:
        self.data = type("Data", (), {"params": params, "metrics": {}})()


def test_a_seed_interval_stays_in_0_1_and_jobs_alike_print_no_interval():
    from taco.reports.seeds import Comparison, t_interval

    low, high = t_interval([0.0, 0.0, 0.3, 0.0, 0.05])
    assert low == 0.0 and 0 < high < 1  # the uncut one reaches below 0
    assert t_interval([0.99, 1.0, 0.97])[1] == 1.0
    table = Comparison(None, ["a", "b"], classes=["Foil"], support={"Foil": 12})
    table.runs = {"a": [1, 2, 3], "b": [1, 2, 3]}
    for a, b in [(0.0, 0.3), (0.0, 0.2), (0.0, 0.25)]:
        table.add("Foil", "a", a), table.add("Foil", "b", b)
    assert table.cell("Foil", "a") == "0.000 (all 3 alike)"


def test_seed_intervals_cover_near_0_and_mid_range():
    from taco.reports.simulate import seed_coverage

    for kind in ("mid", "near 0"):
        found = seed_coverage(kind, trials=600)
        assert found["coverage"] >= 0.9  # about 0.95 and 0.96 at 2,000 trials
    assert seed_coverage("near 0", trials=300)["uncut outside"] > 0.5  # what the cut prevents


def test_a_fold_job_without_logged_predictions_is_named_with_what_to_do(mlflow_uri):
    from taco.errors import DataError
    from taco.reports.cross_validation import pool_runs

    client = mlflow.MlflowClient(mlflow_uri)
    run = client.create_run(get_or_create_experiment(client, "old"))
    client.set_terminated(run.info.run_id)
    with pytest.raises(DataError, match=f"run {run.info.run_id} has no predictions/test.npz"):
        pool_runs(client, [client.get_run(run.info.run_id)], "cnn")


def test_pooling_refuses_an_image_held_out_twice(mlflow_uri, tmp_path):
    import numpy as np

    from taco.errors import DataError
    from taco.reports.cross_validation import pool_runs

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = get_or_create_experiment(client, "twice")
    folder = tmp_path / "predictions"
    folder.mkdir()
    y = np.array([[1, 0], [0, 1]], np.uint8)
    np.savez(
        folder / "test.npz",
        image_ids=np.array([3, 5]),
        y_true=y,
        scores=np.array([[0.9, 0.1], [0.2, 0.7]]),
        thresholds=np.array([0.5, 0.5]),
        class_names=np.array(["Bottle", "Can"]),
    )
    runs = []
    for _ in range(2):  # two seeds of one fold
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "predictions")
        runs.append(client.get_run(run.info.run_id))
    pooled = pool_runs(client, runs[:1], "cnn")
    assert pooled.image_ids.tolist() == [3, 5] and pooled.decided.tolist() == y.tolist()
    with pytest.raises(DataError, match="held out by more than one job"):
        pool_runs(client, runs, "cnn")


def test_a_single_model_cross_validation_compares_nothing():
    """One model: its pooled F1 with intervals, no "significantly best" column, no claim."""
    import numpy as np

    from taco.reports.cross_validation import CrossValidation, Settings, markdown, report_body
    from taco.reports.resampling import Interval

    interval = Interval(
        np.array([0.5, 0.2]), np.array([0.4, 0.1]), np.array([0.6, 0.3]), 0.35, 0.3, 0.4
    )
    cv = CrossValidation(
        variants=["cnn"], classes=["Bottle", "Can"], support={"Bottle": 30, "Can": 5}, images=60,
        folds=2, settings=Settings(), intervals={"cnn": interval}, index={"Bottle": 0, "Can": 1},
    )  # fmt: skip
    table = markdown(cv)
    assert "significantly best" not in table and "no detectable difference" not in table
    assert "| Bottle | 30 | 0.50 [0.40, 0.60] |" in table
    assert "One model (cnn): nothing to compare it with" in report_body(cv)


def _fabricated_cv(macro_p: list[float], permutations: int = 2000, classes: int = 2):
    """Three models with known F1 and macro p-values per pair (a > b > c)."""
    import numpy as np

    from taco.reports.cross_validation import CrossValidation, Settings
    from taco.reports.resampling import Interval, PairedTest

    names = [f"class{i}" for i in range(classes)]
    macro = {"a": 0.5, "b": 0.4, "c": 0.3}
    intervals = {
        v: Interval(np.full(classes, m), np.full(classes, m - 0.1), np.full(classes, m + 0.1),
                    m, m - 0.1, m + 0.1)
        for v, m in macro.items()
    }  # fmt: skip
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    tests = {
        pair: PairedTest(np.full(classes, 0.1), np.full(classes, 0.5), np.full(classes, 0.9),
                         macro[pair[0]] - macro[pair[1]], p, -0.1, 0.2)
        for pair, p in zip(pairs, macro_p, strict=True)
    }  # fmt: skip
    cv = CrossValidation(
        variants=list(macro), classes=names, support={n: 10 for n in names}, images=50, folds=5,
        settings=Settings(permutations=permutations), intervals=intervals, tests=tests,
        index={n: i for i, n in enumerate(names)},
    )  # fmt: skip
    from taco.reports.resampling import holm

    cv.macro_p_holm = dict(zip(tests, holm(np.array(macro_p)).tolist(), strict=True))
    return cv


def test_the_macro_winner_is_decided_with_holm_across_the_pairs():
    from taco.reports.cross_validation import pairs_markdown

    # raw p 0.03 and 0.02 would make "a" best; Holm over 3 pairs: 0.06 and 0.06 -> no winner
    cv = _fabricated_cv([0.03, 0.02, 0.5])
    assert cv.winner("macro F1") is None
    assert "| p (Holm, 3 pairs) |" in pairs_markdown(cv)
    assert "| 0.0300 | 0.0600 |" in pairs_markdown(cv)
    assert _fabricated_cv([0.01, 0.001, 0.5]).winner("macro F1") == "a"  # 0.02, 0.003


def test_too_few_permutations_for_the_family_is_said():
    # 3 pairs x 28 tested classes, 2000 permutations: the smallest Holm p is 84 / 2001 = 0.042;
    # 1000 permutations: 84 / 1001 = 0.084
    cv = _fabricated_cv([0.5, 0.5, 0.5], permutations=1000, classes=28)
    (warning,) = cv.floor_warnings()
    assert "with 84 (pair, class) tests and --permutations 1000" in warning
    assert "0.084 > alpha 0.05" in warning and "--permutations 1679 or more" in warning
    assert _fabricated_cv([0.5, 0.5, 0.5], permutations=2000, classes=28).floor_warnings() == []


def test_a_class_interval_covers_at_any_support_where_the_bootstrap_did_not():
    from taco.reports.simulate import coverage

    for positives in (1, 3, 10, 100):  # exact: at least 0.95 by construction
        assert coverage(positives, trials=300) >= 0.93  # 0.97 to 1.00 at 1,000 trials
    assert coverage(1, trials=300, kind="bootstrap") <= 0.85  # about 0.74: zero-width mostly


def test_the_exact_class_interval_is_never_zero_width_and_holds_the_point():
    import numpy as np

    from taco.reports.resampling import exact_f1_interval

    tp, fp, fn = np.array([0, 1, 5, 20]), np.array([0, 4, 0, 3]), np.array([1, 0, 0, 2])
    low, high = exact_f1_interval(tp, fp, fn)
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert (low <= f1).all() and (f1 <= high).all() and (high - low > 0.05).all()
    assert low[0] == 0 and high[3] < 1 and high[2] == 1  # none found; all 5 found, none false
    assert np.isnan(exact_f1_interval(np.array([0]), np.array([3]), np.array([0]))[0][0])


def test_the_corrected_t_test_holds_alpha_where_the_plain_one_does_not_and_finds_a_difference():
    from taco.reports.simulate import recipe_trials

    null = recipe_trials(6, trials=300)  # two recipes equal on average over data sets
    assert null["corrected"] <= 0.05  # 0.03 at 1,000 trials
    assert null["plain"] >= 0.15  # the plain t-test on the folds: about 0.25
    weaker = recipe_trials(1, trials=200, seed=1)  # F1 lower by about 0.13
    assert weaker["difference"] > 0.1 and weaker["corrected"] >= 0.7


def test_corrected_t_matches_its_formula():
    import numpy as np
    from scipy import stats

    from taco.reports.repeated import corrected_t

    d = np.array([0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.02, 0.06, 0.01, 0.03])
    t = corrected_t(d, 1 / 4)
    se = np.sqrt((1 / 10 + 1 / 4) * d.var(ddof=1))
    assert t.t == pytest.approx(d.mean() / se) and t.df == 9
    assert t.p == pytest.approx(2 * stats.t.sf(abs(d.mean() / se), 9))
    assert t.p_naive == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert t.low == pytest.approx(d.mean() - stats.t.ppf(0.975, 9) * se)
    assert np.isnan(corrected_t(np.array([0.1, np.nan]), 0.25).p)  # one fold: no test


def test_reproduce_statistical_mode_passes_reruns_and_fails_shifted_models():
    from taco.reports.simulate import reproduce_trials

    assert reproduce_trials(0, trials=1000) >= 0.95  # 0.978
    assert reproduce_trials(6, trials=300) <= 0.1  # a model 6 seed SDs off fails


def test_reproduce_mode_is_identical_only_on_the_committed_machine():
    from taco.reports.reproduce import Stated, checks, mode, passed

    machine = {
        "cpu_fingerprint": "AuthenticAMD, family 26, model 2, stepping 1, flags 25fc08b1fed3",
        "versions": "tensorflow 2.21.0", "cpu_threads": "2", "cpu_isa": "AVX2",
        "backend": "tensorflow", "gpu": "none",
    }  # fmt: skip
    assert mode(machine, dict(machine))[0] == "identical"
    intel = {**machine, "cpu_fingerprint": "GenuineIntel, family 6, model 143, stepping 8, flags x"}
    how, why = mode(machine, intel)
    assert how == "statistical" and "GenuineIntel" in why and "cpu_fingerprint" in why
    assert mode(None, machine)[0] == "statistical"
    committed = {
        ("macro F1", "cnn"): Stated(0.4050, 0.38, 0.43, "", 0.02, 5),
        ("Bottle", "cnn"): Stated(0.7000, 0.65, 0.75, "", 0.05, 5),
    }
    new = {("macro F1", "cnn"): 0.4051, ("Bottle", "cnn"): 0.2}
    same = checks(committed, lambda r, v: new[r, v], "identical", 5)
    assert not passed(same)  # identical: every number decides, to the CSV's 4 decimals
    new[("macro F1", "cnn")], new[("Bottle", "cnn")] = 0.40504, 0.70003
    assert passed(checks(committed, lambda r, v: new[r, v], "identical", 5))
    new[("macro F1", "cnn")], new[("Bottle", "cnn")] = 0.43, 0.2
    elsewhere = checks(committed, lambda r, v: new[r, v], "statistical", 5)
    assert passed(elsewhere)  # macro within its prediction interval; the class informative
    assert [c.decides for c in elsewhere] == [True, False]


def test_floors_per_class_and_their_macro():
    import numpy as np

    from taco.reports.floors import EVERY, PREVALENCE, floors

    y = np.zeros((10, 3), int)
    y[:5, 0] = 1
    y[0, 1] = 1  # the third class has no positive
    f = floors(y, ["a", "b", "c"])
    assert f.f1(EVERY, "a") == pytest.approx(2 * 5 / 15) and f.f1(EVERY, "b") == pytest.approx(
        2 / 11
    )
    assert f.f1(PREVALENCE, "a") == 0.5 and np.isnan(f.f1(EVERY, "c"))
    assert f.f1(EVERY, "macro F1") == pytest.approx((2 * 5 / 15 + 2 / 11) / 2)
    assert f.best("a") == pytest.approx(2 * 5 / 15)


def test_a_cross_validation_verdict_says_too_few_to_tell_power_and_the_winners_lead():
    import numpy as np

    from taco.reports.cross_validation import markdown
    from taco.reports.floors import floors
    from taco.reports.resampling import PairedTest, detectable_difference

    cv = _fabricated_cv([0.001, 0.001, 0.5], classes=3)
    cv.support["class2"] = 4  # too few positives to tell
    for pair, t in cv.tests.items():  # class0: a far better (Holm p 0.003); class1: no difference
        p = np.array([0.001, 0.6, 0.001])
        cv.tests[pair] = PairedTest(
            t.diff, p, p * 3, t.macro_diff, t.macro_p, t.macro_low, t.macro_high,
            se=np.full(3, 0.05), macro_se=0.01,
        )  # fmt: skip
    assert cv.verdict("class0") == "a (+0.10)"  # a 0.5 against b 0.4; Holm over 3 x 2 tests
    assert cv.class_tests() == 6 and cv.class_p_of("b", "a")[0] == pytest.approx(0.006)
    assert cv.verdict("class2") == "too few to tell (< 10 positives)"
    # no difference: the lead over b (0.4) the test finds 4 times in 5 at alpha / 6, simulated
    lead = detectable_difference(0.4, 10, 50, 0.05, 6, 2000)
    assert 0.1 < lead < 0.6
    assert cv.verdict("class1") == f"no detectable difference (80% power at +{lead:.2f})"
    cv.images = 12  # 10 positives of 12 images: no model is found better 4 times in 5
    assert cv.verdict("class1").endswith("not estimable)")
    y = np.zeros((50, 3), int)
    y[:10, 0] = y[:10, 1] = y[:4, 2] = 1
    cv.floors = floors(y, ["class0", "class1", "class2"])
    assert cv.floor_mark("class0", "c") == " †"  # [0.2, 0.4] reaches the floor 2*10/60=0.33
    assert cv.floor_mark("class0", "a") == ""
    assert "0.30 [0.20, 0.40] †" in markdown(cv)
    cv.floors = floors(np.ones((50, 3), int), ["class0", "class1", "class2"])  # floors of 1.0
    assert cv.floor_mark("class0", "a") == " ↓"  # [0.4, 0.6] wholly below: worse than it


def test_holm_across_the_pairs_keeps_the_family_of_the_pairs_table_at_alpha():
    from taco.reports.simulate import pairs_trials

    rates = pairs_trials(4, trials=300)  # 4 identical models: 6 pairs
    assert rates["raw"] >= 0.1  # about 0.19: a "difference" in one trial of five
    assert rates["holm"] <= 0.07  # about 0.04
    assert rates["classes within pairs"] >= 0.08  # Holm within each pair only: about 0.13
    assert rates["classes family"] <= 0.05  # across every (pair, class): about 0.01


def test_the_macro_interval_covers_on_cross_validation_like_supports():
    from taco.reports.simulate import macro_coverage

    # 200 trials: Monte Carlo SE 0.015 around 0.95
    assert 0.905 <= macro_coverage(trials=200, seed=1) <= 0.995


def test_the_stated_lead_is_found_4_times_in_5_at_a_rare_and_a_common_support():
    from taco.reports.simulate import power_check

    for positives, base in ((11, 0.0), (100, 0.3)):  # 11: where the report said ±0.08
        found = power_check(positives, base, trials=150, tests=5, permutations=1999)
        assert found["lead"] > 0.1 and found["power"] >= 0.7, (positives, found)


def test_reproduce_passes_an_unchanged_cross_validation_at_any_training_noise():
    from taco.reports.simulate import reproduce_cv_trials

    for training in (0.25, 1.0):
        assert reproduce_cv_trials(training, 0, trials=400) >= 0.95  # 0.98 to 1.00
    assert reproduce_cv_trials(1.0, 8, trials=200) <= 0.2

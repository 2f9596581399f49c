"""The tables of README "How sure is a number?" (`make bench-statistics`): the coverage of each
interval kind the reports print, the power behind "no detectable difference", the family rates of
the pairs table, type-I error and power of the corrected resampled t-test against the plain one,
and `make reproduce`'s pass rate on same-distribution re-runs and shifted models; each a
simulation through the project's own functions (taco.reports.simulate), 1,000 trials unless
told. It ends with three lines a script can read: the macro interval's coverage, the pairs
table's class family rate, and reproduce's lowest pass rate on unchanged cross-validations."""

from __future__ import annotations

import argparse
import time


def main() -> None:
    from taco.reports import simulate as sim

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    trials = parser.parse_args().trials
    started = time.perf_counter()

    print("| test positives | exact interval covers (reports now) | bootstrap covered (before) |")
    print("|---:|---:|---:|")
    for positives in (1, 3, 10, 100):
        exact = sim.coverage(positives, trials, kind="exact")
        boot = sim.coverage(positives, trials, kind="bootstrap")
        print(f"| {positives} | {exact:.3f} | {boot:.3f} |")

    models = 4  # a model drawn per seed: recall 0-0.9 and a false-positive rate per class
    each = max(trials // models, 1)
    macro = {
        kind: sum(sim.macro_coverage(each, seed, kind) for seed in range(models)) / models
        for kind in ("report", "pinned")
    }
    print(
        f"\n| macro F1, {len(sim.SUPPORTS)} classes of {sim.SUPPORTS[0]} to {sim.SUPPORTS[-1]} "
        f"positives in {sim.IMAGES} images | 95% bootstrap covers |\n|---|---:|"
        f"\n| each resample averages the classes it has (reports now) | {macro['report']:.3f} |"
        f"\n| class set pinned in every resample (before) | {macro['pinned']:.3f} |"
    )

    print(
        "\n| 5 seeds' F1 | t-interval cut to [0, 1] covers | uncut would leave [0, 1] "
        "| all 5 alike (no interval) |\n|---|---:|---:|---:|"
    )
    for kind in ("mid", "near 0"):
        s = sim.seed_coverage(kind, trials)
        print(f"| {kind} | {s['coverage']:.3f} | {s['uncut outside']:.3f} | {s['alike']:.3f} |")

    power_trials = max(trials * 2 // 5, 20)
    print(
        "\n| class positives | runner-up F1 | lead stated for 80% power | found by the test |"
        "\n|---:|---:|---:|---:|"
    )
    for positives, base in ((11, 0.0), (11, 0.3), (100, 0.0), (100, 0.3)):
        p = sim.power_check(positives, base, power_trials)
        lead = "not estimable" if p["lead"] != p["lead"] else f"+{p['lead']:.2f}"
        print(f"| {positives} | {base:.1f} | {lead} | {p['power']:.3f} |")
    print(f"\n({power_trials} trials each: 23 tested classes x 1 pair, 9,999 permutations)")

    pairs = sim.pairs_trials(4, trials)
    print(
        "\n| 4 identical models, 6 pairs, 4 classes | share of trials with a false claim |"
        f"\n|---|---:|\n| macro, raw p < 0.05 | {pairs['raw']:.3f} |"
        f"\n| macro, Holm across the pairs | {pairs['holm']:.3f} |"
        f"\n| a class better, Holm within each pair (before) | "
        f"{pairs['classes within pairs']:.3f} |"
        f"\n| a class better, Holm across every (pair, class) | {pairs['classes family']:.3f} |"
    )

    print(
        "\n| recipe B (A: 6 features) | mean F1 A - B | corrected t rejects | plain t rejects |"
        "\n|---|---:|---:|---:|"
    )
    for features, name in ((6, "6 other features (null)"), (2, "2 features"), (1, "1 feature")):
        r = sim.recipe_trials(features, trials)
        print(f"| {name} | {r['difference']:+.3f} | {r['corrected']:.3f} | {r['plain']:.3f} |")

    print("\n| seed study: new runs shifted by | reproduce passes |\n|---:|---:|")
    for shift in (0, 2, 4, 6):
        print(f"| {shift} SD | {sim.reproduce_trials(shift, trials):.3f} |")

    print(
        "\n| cross-validation: training noise, share of the folds' SD | passes, unchanged "
        "| passes, shifted 2 SD | passes, shifted 4 SD |\n|---:|---:|---:|---:|"
    )
    unchanged = []
    for training in (0.25, 0.5, 0.75, 1.0):
        rates = [sim.reproduce_cv_trials(training, shift, trials) for shift in (0, 2, 4)]
        unchanged.append(rates[0])
        print(f"| {training:.2f} | " + " | ".join(f"{r:.3f}" for r in rates) + " |")

    print(f"\n{trials} trials each, {time.perf_counter() - started:.0f} s")
    print(f"macro interval coverage {macro['report']:.3f}")
    print(f"pairs class family rate {pairs['classes family']:.3f}")
    print(f"reproduce cv same-distribution pass {min(unchanged):.3f}")


if __name__ == "__main__":
    main()

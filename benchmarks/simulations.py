"""The tables of README "How sure is a number?" (`make bench-statistics`): bootstrap coverage by
positives, type-I error and power of the corrected resampled t-test against the plain one, and
`make reproduce`'s pass rate on same-distribution re-runs and shifted models; each a simulation
through the project's own functions (taco.reports.simulate), 1,000 trials unless told."""

from __future__ import annotations

import argparse
import time


def main() -> None:
    from taco.reports.simulate import coverage, pairs_trials, recipe_trials, reproduce_trials

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    trials = parser.parse_args().trials
    started = time.perf_counter()
    print("| test positives | bootstrap 95% interval coverage |\n|---:|---:|")
    for positives in (3, 5, 10, 20, 40):
        print(f"| {positives} | {coverage(positives, trials):.3f} |")
    print(
        "\n| recipe B (A: 6 features) | mean F1 A - B | corrected t rejects | plain t rejects |"
        "\n|---|---:|---:|---:|"
    )
    for features, name in ((6, "6 other features (null)"), (2, "2 features"), (1, "1 feature")):
        r = recipe_trials(features, trials)
        print(f"| {name} | {r['difference']:+.3f} | {r['corrected']:.3f} | {r['plain']:.3f} |")
    pairs = pairs_trials(4, trials)
    print(
        "\n| 4 identical models, 6 pairs | a macro p < 0.05 |\n|---|---:|"
        f"\n| raw p | {pairs['raw']:.3f} |\n| Holm across the pairs | {pairs['holm']:.3f} |"
    )
    print("\n| new runs shifted by | reproduce passes |\n|---:|---:|")
    for shift in (0, 2, 4, 6):
        print(f"| {shift} SD | {reproduce_trials(shift, trials):.3f} |")
    print(f"\n{trials} trials each, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""A study's REPORT.md: what the study is and how to re-run it, where and with what it ran
(machine fingerprint, versions), the body (seed table, cross-validation, repeated
cross-validation), and what each variant ran, from its logged config."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from taco import tables
from taco.config import CONF_DIR
from taco.reports.runs import Sweep, recipe
from taco.tracking.tags import Tag

MACRO_F1 = (
    "Macro F1 is the mean F1 over the classes with at least one positive test image: a class "
    "with none is left out, even where a model predicts it (those false positives cost "
    "nothing)."
)
TWO_LEVELS_MODELS = (
    "*Question answered: are these trained models better than those on these images?* The "
    "intervals and tests resample the images and hold the trained models fixed (one training "
    "seed per fold). A result here licenses a claim about these models on data like these "
    "images, not about the recipe (architecture, training settings) that made them: training "
    "again with another seed moves the numbers too."
)
TWO_LEVELS_SEEDS = (
    "*Question answered: what does this recipe score on this test split, over training "
    "seeds?* The interval is the spread of training seeds on one fixed test split (unless the "
    "sweep varies `dataset.split_seed` too): the test split's own sampling noise is not in it, "
    "so a class with few test positives can differ between recipes by luck of the split."
)
TWO_LEVELS_RECIPE = (
    "*Question answered: is this recipe better than that one on this kind of data?* Each "
    "repetition draws a new fold split and a new training seed, so the per-fold differences "
    "carry the training noise and the data's. The corrected resampled t-test (Nadeau & Bengio "
    "2003; Bouckaert & Frank 2004) widens the variance by n_test / n_train for the folds' "
    "overlapping training sets; a plain t-test on the folds would claim differences far more "
    'often than alpha (README, "How sure is a number?").'
)
REPRODUCE_FILE = "reproduce.json"


def threshold_note(rare: dict[str, int]) -> str:
    """What ‡ on a class means, when some class carries it."""
    if not rare:
        return ""
    return (
        " ‡: the class's threshold was tuned on fewer validation positives than the trainer's "
        "`threshold_min_positives` in at least one job (the fewest in brackets): capped at twice "
        "its positives, but still fitted to a few images, so its F1 says little about a new "
        "data set; `taco-predict` marks its labels '?' (or leaves them out with "
        "`--rare-thresholds omit`)."
    )


def study_description(study: str) -> str:
    """The leading comment of `conf/experiment/<study>.yaml`: what the study is and why."""
    path = CONF_DIR / "experiment" / f"{study}.yaml"
    if not path.is_file():
        return ""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            lines.append(line[1:].strip())
    return " ".join(" ".join(lines).split())


def report_markdown(sweep: Sweep, study: str, command: str, body: str) -> str:
    """REPORT.md: what the study is, how to re-run it, where and with what it ran, then `body`
    and the per-variant lines."""
    parent = sweep.parent
    tags = parent.data.tags
    start, end = parent.info.start_time, parent.info.end_time
    wall = f"{(end - start) / 60000:.1f} min" if end else "still running"
    lines = [
        f"# {study}: test F1 by class",
        "",
        *([study_description(study), ""] if study_description(study) else []),
        "Produced by `taco-compare` from the sweep's runs in MLflow; do not edit by hand.",
        "",
        "Re-run the study and this report with:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- sweep parent run: `{parent.info.run_id}` ({parent.info.status}), "
        f"{len(sweep.jobs())} finished job(s), wall time {wall}",
        f"- sweep overrides: `{tags.get(Tag.HYDRA_OVERRIDES, '')}`",
        f"- launcher: `{tags.get('launcher', '')}`",
        f"- git commit: `{tags.get(Tag.GIT_COMMIT, '?')}`"
        + (" (uncommitted changes)" if tags.get(Tag.GIT_DIRTY) == "true" else ""),
        f"- written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        *_machine_lines(sweep),
        "",
        body,
    ]
    return "\n".join([*lines, *_per_variant_lines(sweep)]) + "\n"


def seen(sweep: Sweep, tag: str) -> str:
    """The values of a run tag over the sweep's jobs, joined (one value where they agree)."""
    return "; ".join(sorted({r.data.tags.get(tag, "not recorded") for r in sweep.jobs()}))


def _machine_lines(sweep: Sweep) -> list[str]:
    """Where the jobs ran (tags of their runs): numbers move with the CPU and the versions."""
    return [
        f"- hardware: CPU {seen(sweep, 'cpu')}, GPU {seen(sweep, 'gpu')}",
        f"- CPU fingerprint: {seen(sweep, 'cpu_fingerprint')}; threads "
        f"{_param(sweep, 'trainer.cpu_threads')}, ISA cap {_param(sweep, 'trainer.cpu_isa')}",
        f"- versions: {seen(sweep, 'versions')}",
    ]


def _param(sweep: Sweep, key: str) -> str:
    return "; ".join(sorted({r.data.params.get(key, "not recorded") for r in sweep.jobs()}))


def machine(sweep: Sweep) -> dict[str, str]:
    """What decides whether a re-run can match the report bit for bit (`make reproduce`)."""
    return {
        "cpu_fingerprint": seen(sweep, "cpu_fingerprint"),
        "versions": seen(sweep, "versions"),
        "cpu_threads": _param(sweep, "trainer.cpu_threads"),
        "cpu_isa": _param(sweep, "trainer.cpu_isa"),
        "backend": _param(sweep, "trainer.backend"),
        "gpu": seen(sweep, "gpu"),
    }


def write_machine(sweep: Sweep, folder: Path, jobs_per_variant: int) -> None:
    """`reproduce.json` beside the report: the machine and the jobs behind each number."""
    record = {"machine": machine(sweep), "jobs_per_variant": jobs_per_variant}
    (folder / REPRODUCE_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _per_variant_lines(sweep: Sweep) -> list[str]:
    """What each variant ran (its logged config), its time and the jobs left out."""
    rows = []
    for variant, runs in sweep.runs.items():
        m = defaultdict(lambda: float("nan"), runs[0].data.metrics)
        rows.append([variant, len(runs), f"`{runs[0].info.run_id[:8]}`", recipe(runs).text(),
                     f"{m['fit_seconds']:.0f}"])  # fmt: skip
    head = ["variant", "jobs", "first run", "weights, image size, epochs, batch", "fit s"]
    lines = [
        "What each variant ran (from its jobs' logged config; fit time of the first job):",
        "",
        *tables.markdown(head, rows, align="lrllr").splitlines(),
    ]
    if sweep.unfinished:
        lines += ["", "Jobs that did not finish (left out of the table):", ""]
        lines += [
            f"- `{r.info.run_id[:8]}` {r.data.tags.get(Tag.HYDRA_OVERRIDES, '')}: {r.info.status}"
            for r in sweep.unfinished
        ]
    return lines

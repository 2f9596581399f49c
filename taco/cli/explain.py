"""`taco-explain`: why a trained model fails, per class, on a split of a dataset config or on a
folder of images; for a sweep parent, its models side by side on the same images.

The model (a run's logged model, a registered version, or a model folder) brings its classes,
thresholds and input size; the dataset config brings the images, labels, boxes and the seeded
split, as for `taco-eval`. What it writes is what a training run logs under `analysis/`
(`taco.analysis.write`), in `output` (and with `log=true` in the model's run, `explain/`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from taco.analysis.figures import comparison_sheet, image_overlays
from taco.analysis.write import saliency, write_curves, write_errors, write_pointing
from taco.cli.evaluate import check_same_classes
from taco.cli.predict import read_folder
from taco.config import CONF_DIR, build, default_tracking_uri, resolved_config, run_reference
from taco.errors import ConfigError, TacoError, cli_errors, hydra_errors
from taco.files import staged_folder
from taco.metrics import evaluate, sanitize
from taco.models.registry import load_model
from taco.process import limit_cpu_isa, native_noise_filtered, use_backend
from taco.schema import ExplainSchema, check_config
from taco.signals import interrupts
from taco.tracking.logged_model import load_logged_model, model_uri, source_run_id
from taco.tracking.store import store_errors

log = logging.getLogger("taco.explain")


@dataclass
class Explained:
    """One model on one split: what the side-by-side sheets need."""

    label: str
    ids: np.ndarray
    images: np.ndarray
    y_true: np.ndarray
    scores: np.ndarray
    thresholds: np.ndarray
    class_names: list[str]
    looks: Any


def explain(cfg: DictConfig) -> Path:
    """Writes the analysis of the model(s) `cfg` names to `cfg.output`; returns that folder."""
    check_config(resolved_config(cfg), ExplainSchema)
    given = [k for k in ("run_id", "model_dir", "sweep") if cfg.get(k)]
    if len(given) != 1:
        raise ConfigError("give exactly one of run_id=<run or model>, model_dir=<model folder> "
                          "or sweep=<parent run id>")  # fmt: skip
    if cfg.log and not (cfg.run_id or cfg.sweep):
        raise ConfigError("log=true needs a model from the store (run_id= or sweep=), not "
                          "model_dir=: a folder has no run to log to")  # fmt: skip
    if cfg.split not in ("train", "val", "test"):
        raise ConfigError(f"split={cfg.split!r} is not allowed: expected 'train' | 'val' | 'test'")
    if cfg.on_bad_image not in ("error", "skip"):
        raise ConfigError(
            f"on_bad_image={cfg.on_bad_image!r} is not allowed: expected 'error' | 'skip'"
        )
    use_backend(cfg.trainer.get("backend") or "tensorflow")  # before a model loads Keras
    limit_cpu_isa(cfg.trainer.get("cpu_isa"))
    uri = build(cfg.logger).tracking_uri or default_tracking_uri()
    out = Path(cfg.output)
    started = time.perf_counter()
    with staged_folder(out) as staging:  # whole or not at all: a full disk leaves nothing
        if cfg.sweep:
            explained = [
                explain_model(load(run_id, uri), cfg, staging / label, label)
                for label, run_id in sweep_models(run_reference(cfg, "sweep"), uri)
            ]
            if not cfg.images:
                side_by_side(staging / "compare", explained, int(cfg.per_class))
        else:
            reference = run_reference(cfg, "run_id")
            model = load(reference, uri) if reference else _from_folder(cfg.model_dir)
            explain_model(model, cfg, staging, model.info.get("model", "model"))
    seconds = time.perf_counter() - started
    print(f"taco-explain: wrote {out} in {seconds:.1f} s")
    if cfg.log:
        _log(cfg, out, uri)
    return out


def load(reference: str, uri: str) -> Any:
    return load_logged_model(reference, uri)


def _from_folder(folder: str) -> Any:
    return load_model(Path(folder))


def explain_model(model: Any, cfg: DictConfig, folder: Path, label: str) -> Explained | None:
    """One model's curves, galleries, saliency and pointing game on the split (or overlays for
    each image of `cfg.images`)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(model.class_names)
    if cfg.images:
        _explain_folder(model, Path(cfg.images), folder, cfg)
        return None

    datamodule = build(
        cfg.dataset, image_size=model.image_size, resize=model.resize, augmentation=None
    )
    datamodule.prepare_data()
    datamodule.setup()
    check_same_classes(model, datamodule, cfg)
    part = str(cfg.split)
    images, y_true = datamodule.images(part), datamodule.labels(part)
    scores = np.asarray(model.predict(images), np.float64)
    thresholds = model.thresholds
    looks = saliency(model.predict, images, len(names), int(cfg.patch), int(cfg.stride))
    boxes = datamodule.boxes(part)
    result = evaluate(y_true, scores, thresholds, names)
    summary: dict[str, Any] = {
        "model": label,
        "split": part,
        "images": len(images),
        "f1_macro": result.f1_macro,
    }
    write_curves(folder, result)
    if boxes:
        summary["pointing"] = write_pointing(folder, looks, result, boxes)
    ids = np.asarray(datamodule.record()[1][part])
    write_errors(folder, images, result, ids, int(cfg.per_class), looks, boxes or None)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    pointing = summary.get("pointing")
    if pointing:
        print(
            f"{label}: {part} macro F1 {summary['f1_macro']:.3f}; saliency peak inside a box of "
            f"the class in {pointing['model']:.3f} of {int(pointing['pairs'])} pairs (image "
            f"centre {pointing['centre']:.3f}, random point {pointing['random']:.3f})"
        )
    return Explained(label, ids, images, y_true, scores, thresholds, names, looks)


def _explain_folder(model: Any, images_dir: Path, folder: Path, cfg: DictConfig) -> None:
    paths, images = read_folder(
        model, images_dir, str(cfg.on_bad_image), "taco-explain", "on_bad_image=skip"
    )
    scores = model.predict(images)
    looks = saliency(model.predict, images, len(model.class_names), int(cfg.patch),
                     int(cfg.stride))  # fmt: skip
    (folder / "overlays").mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        sheet = image_overlays(images[i], looks.maps(i), scores[i], model.thresholds,
                               model.class_names)  # fmt: skip
        sheet.save(folder / "overlays" / f"{i:04d}_{path.stem}.png")


def sweep_models(parent: str, uri: str) -> list[tuple[str, str]]:
    """(label, run id) of each finished job of a sweep parent that logged a model."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    parent_id = model_uri(parent, client)[len("runs:/") :].partition("/")[0]
    experiment = client.get_run(parent_id).info.experiment_id
    children = client.search_runs(
        [experiment],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' AND attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    found = [
        (f"{run.data.tags.get('model', 'model')}-{run.info.run_id[:8]}", run.info.run_id)
        for run in children
        if run.outputs.model_outputs
    ]
    if not found:
        raise TacoError(f"no finished job of sweep {parent_id} logged a model (in {uri})")
    return found


def side_by_side(folder: Path, explained: list[Explained], per_class: int) -> None:
    """`compare/<class>.png`: per class, the same images under every model: the positives the
    models score lowest on average (the shared misses), then the negatives they score highest."""
    folder.mkdir(parents=True, exist_ok=True)
    first = explained[0]
    rows = [
        {int(image_id): r for r, image_id in enumerate(e.ids)} for e in explained
    ]  # each model's split, by image id (models may see it at other sizes)
    shared = [i for i in first.ids.tolist() if all(i in r for r in rows)]
    for c, name in enumerate(first.class_names):
        truth = np.array([first.y_true[rows[0][i], c] for i in shared], bool)
        if not truth.any():
            continue
        mean = np.mean([[e.scores[r[i], c] for i in shared] for e, r in zip(explained, rows,
                        strict=True)], axis=0)  # fmt: skip
        positives = np.flatnonzero(truth)[np.argsort(mean[truth], kind="stable")][:per_class]
        negatives = np.flatnonzero(~truth)[np.argsort(-mean[~truth], kind="stable")][:per_class]
        chosen = [shared[k] for k in (*positives, *negatives)]
        captions = [("has it" if first.y_true[rows[0][i], c] else "hasn't") + f" #{i}"
                    for i in chosen]  # fmt: skip
        pictures = [[e.images[r[i]] for i in chosen] for e, r in zip(explained, rows, strict=True)]
        maps = [
            [e.looks.map(r[i], c) for i in chosen] for e, r in zip(explained, rows, strict=True)
        ]
        scores = np.array([[e.scores[r[i], c] for i in chosen] for e, r in zip(explained, rows,
                           strict=True)])  # fmt: skip
        sheet = comparison_sheet(
            f"{name}: the same images under each model (score vs its threshold)",
            [e.label for e in explained],
            pictures,
            maps,
            scores,
            np.array([e.thresholds[c] for e in explained]),
            captions,
        )
        sheet.save(folder / f"{sanitize(name)}.png")


def _log(cfg: DictConfig, out: Path, uri: str) -> None:
    """The folder into the model's run (or the sweep parent), under `explain/<split>`."""
    import mlflow

    client = mlflow.MlflowClient(uri, registry_uri=uri)
    if cfg.sweep:
        run_id = model_uri(run_reference(cfg, "sweep"), client)[len("runs:/") :].partition("/")[0]
    else:  # run_id= (explain() refused log=true with model_dir=)
        run_id = source_run_id(run_reference(cfg, "run_id"), client)
    name = f"explain/{'images' if cfg.images else cfg.split}"
    client.log_artifacts(run_id, str(out), name)
    print(f"taco-explain: logged to run {run_id} under {name}/")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="explain")
def hydra_main(cfg: DictConfig) -> None:
    uri = str(cfg.get("logger", {}).get("tracking_uri") or default_tracking_uri())
    with cli_errors("taco-explain"), store_errors(uri), native_noise_filtered():
        explain(cfg)


def main() -> None:
    """`taco-explain`: Ctrl-C or SIGTERM ends it with one line."""
    with interrupts("taco-explain"), hydra_errors("taco-explain"):
        hydra_main()


if __name__ == "__main__":
    main()

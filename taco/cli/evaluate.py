"""`taco-eval`: a trained model on the test split of a dataset config, logged to a new run.

The model (from a run's `model/` artifact, or a model folder) brings its class names, thresholds
and image size; the dataset config brings the images and the seeded split. The new run is tagged
with the training run's id (`source_run_id`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from taco.config import CONF_DIR, build, default_tracking_uri, resolved_config, run_reference
from taco.errors import ConfigError, cli_errors, hydra_errors
from taco.metrics import evaluate
from taco.models.registry import load_model
from taco.process import limit_cpu_isa, use_backend
from taco.schema import EvalSchema, check_config
from taco.signals import interrupts
from taco.tracking.logged_model import load_logged_model
from taco.tracking.store import store_errors
from taco.tracking.tags import Tag


def evaluate_model(cfg: DictConfig) -> float:
    """Returns the test macro F1; logs per-class test metrics to a new run."""
    check_config(resolved_config(cfg), EvalSchema)
    use_backend(cfg.trainer.get("backend") or "tensorflow")  # before the model loads Keras
    limit_cpu_isa(cfg.trainer.get("cpu_isa"))  # the kernels training used: the same numbers
    folder = str(cfg.model_dir) if cfg.get("model_dir") else None
    if bool(cfg.run_id) == bool(folder):
        raise ConfigError("give exactly one of run_id=<MLflow run id> or model_dir=<model folder>")
    logger = build(cfg.logger)
    if cfg.run_id:
        reference = run_reference(cfg, "run_id")
        model = load_logged_model(reference, logger.tracking_uri or default_tracking_uri())
    else:
        model = load_model(Path(folder))
    datamodule = build(
        cfg.dataset, image_size=model.image_size, resize=model.resize, augmentation=None
    )
    datamodule.prepare_data()
    datamodule.setup()
    check_same_classes(model, datamodule, cfg)
    tags = {"task": "eval", "dataset": cfg.dataset.name, "model": model.info.get("model", "?")}
    if cfg.run_id:
        tags[Tag.SOURCE_RUN] = run_reference(cfg, "run_id")
    with logger.run(tags=tags):
        test = datamodule.batches("test")
        scores = model.predict(test.images())
        result = evaluate(test.targets(), scores, model.thresholds, model.class_names)
        params = {
            "run_id": run_reference(cfg, "run_id"),
            "model_dir": folder,
            "dataset.name": cfg.dataset.name,
        }
        logger.log_params({**params, "seed": cfg.seed})
        logger.log_metrics({**result.summary("test"), **result.per_class("test")})
        logger.log_text(result.table(), "per_class_test.md")
    print(f"\nTest set of {cfg.dataset.name}, model {model.info.get('model', '?')}:")
    print(result.table())
    return result.f1_macro


def check_same_classes(model: Any, datamodule: Any, cfg: DictConfig) -> None:
    """Refuse data labelled under another class map than the model was trained on."""
    if datamodule.class_names != model.class_names:
        raise ConfigError(
            f"the model predicts {len(model.class_names)} classes {model.class_names[:3]}...; "
            f"dataset {cfg.dataset.name} with label_level={cfg.dataset.label_level} has "
            f"{datamodule.num_classes} {datamodule.class_names[:3]}...: use the same class map"
        )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def hydra_main(cfg: DictConfig) -> float:
    with cli_errors("taco-eval"), store_errors(store_uri(cfg)):
        return evaluate_model(cfg)


def store_uri(cfg: DictConfig) -> str:
    return str(cfg.get("logger", {}).get("tracking_uri") or default_tracking_uri())


def main() -> None:
    """`taco-eval`: Ctrl-C or SIGTERM ends it with one line (its run is closed KILLED)."""
    with interrupts("taco-eval"), hydra_errors("taco-eval"):
        hydra_main()


if __name__ == "__main__":
    main()

"""`taco-eval`: a trained model on the test split of a dataset config, logged to a new run.

The model (from a run's `model/` artifact, or a model folder) brings its class names, thresholds
and image size; the dataset config brings the images and the seeded split. The new run is tagged
with the training run's id (`source_run_id`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from taco.config import CONF_DIR, register_resolvers
from taco.errors import ConfigError, exit_on_user_error

log = logging.getLogger("taco.eval")
register_resolvers()


def evaluate_model(cfg: DictConfig) -> float:
    """Returns the test macro F1; logs per-class test metrics to a new run."""
    from hydra.utils import instantiate

    from taco.predict import load_model, load_run_model

    if bool(cfg.run_id) == bool(cfg.ckpt_path):
        raise ConfigError("give exactly one of run_id=<MLflow run id> or ckpt_path=<model folder>")
    logger = instantiate(cfg.logger)
    if cfg.run_id:
        model = load_run_model(str(cfg.run_id), getattr(logger, "tracking_uri", None))
    else:
        model = load_model(Path(cfg.ckpt_path))
    tags = {"task": "eval", "dataset": cfg.dataset.name, "model": model.info.get("model", "?")}
    if cfg.run_id:
        tags["source_run_id"] = str(cfg.run_id)
    with logger.run(tags=tags):
        return _evaluate_in_run(cfg, model, logger)


def _evaluate_in_run(cfg: DictConfig, model, logger) -> float:
    from hydra.utils import instantiate

    from taco.metrics import evaluate
    from taco.trainer import per_class_metrics

    image_size = int(model.info["image_size"])
    datamodule = instantiate(
        cfg.dataset,
        image_size=image_size,
        cache_dir=cfg.paths.cache_dir,
        seed=cfg.seed,
        resize=model.info.get("resize", "squash"),
    )
    datamodule.prepare_data()
    datamodule.setup()
    if datamodule.class_names != model.class_names:
        raise ConfigError(
            f"the model predicts {len(model.class_names)} classes {model.class_names[:3]}...; "
            f"dataset {cfg.dataset.name} with label_level={datamodule.label_level} has "
            f"{datamodule.num_classes} {datamodule.class_names[:3]}...: use the same class map"
        )
    rows = datamodule.rows["test"]
    images = np.asarray(datamodule.cache.array[rows], np.float32)
    result = evaluate(
        datamodule.labels("test"), model.predict(images), model.thresholds, model.class_names
    )
    logger.log_params(
        {
            "run_id": cfg.run_id,
            "ckpt_path": cfg.ckpt_path,
            "dataset.name": cfg.dataset.name,
            "seed": cfg.seed,
        }
    )
    logger.log_metrics({**result.summary("test"), **per_class_metrics(result, "test")})
    logger.log_text(result.table(), "per_class_test.md")
    print(f"\nTest set of {cfg.dataset.name}, model {model.info.get('model', '?')}:")
    print(result.table())
    return result.f1_macro


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float:
    with exit_on_user_error("taco-eval"):
        return evaluate_model(cfg)


if __name__ == "__main__":
    main()

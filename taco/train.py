"""`taco-train`: compose the config, train, tune thresholds, test, log everything to MLflow.

Only Hydra and OmegaConf are imported at module level, so `--help` and `--cfg job` stay fast;
TensorFlow, Keras and MLflow load inside `train()`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from taco.config import CONF_DIR, flatten, register_resolvers
from taco.errors import ConfigError, exit_on_user_error

log = logging.getLogger("taco.train")

register_resolvers()


def output_dir(cfg: DictConfig) -> Path | None:
    """This job's Hydra output folder, or None when composed without Hydra's runtime."""
    try:
        return Path(cfg.paths.output_dir)
    except Exception:
        return None


def resolved_config(cfg: DictConfig) -> dict:
    """The config with every interpolation resolved (Hydra-only ones left as written)."""
    cfg = cfg.copy()
    try:
        cfg.paths.output_dir = str(output_dir(cfg))
    except Exception:
        pass
    return OmegaConf.to_container(cfg, resolve=True)


def _instantiate_optional(node: Any) -> Any:
    from hydra.utils import instantiate

    if node is None or "_target_" not in node or node._target_ is None:
        return None
    return instantiate(node)


def instantiate_callbacks(node: Any) -> list[Any]:
    """`callbacks.<name>: {_target_: ...}` -> objects; a null entry is switched off."""
    from hydra.utils import instantiate

    callbacks = []
    for name, spec in (node or {}).items():
        if spec is None:
            continue
        if "_target_" not in spec:
            raise ConfigError(f"callbacks.{name} has no _target_: name the class to build")
        callbacks.append(instantiate(spec))
    return callbacks


def checkpoint_search_dirs(cfg: DictConfig) -> list[Path]:
    """Where `ckpt_path=last` looks: this job's folder, then every run and sweep folder."""
    root = Path(cfg.paths.root_dir)
    dirs = [output_dir(cfg), root / "outputs", root / "multirun"]
    return list(dict.fromkeys(d for d in dirs if d is not None))


def _overrides_tag() -> dict[str, str]:
    """The command-line overrides of this job, when run by Hydra (empty under compose)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except Exception:
        return {}
    return {"hydra_overrides": " ".join(overrides)[:5000] or "(none)"}


def train(cfg: DictConfig) -> float:
    """Run one training job described by `cfg`; returns `cfg.optimized_metric`."""
    from hydra.utils import instantiate

    from taco import checkpoint, sweep
    from taco.tracking import git_state

    sweep.prepare_job()
    logger = instantiate(cfg.logger)
    tags = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "task": cfg.task_name,
        **git_state(Path(cfg.paths.root_dir)),
        **_overrides_tag(),
        **sweep.job_tags(),
        **{str(k): str(v) for k, v in (cfg.get("tags") or {}).items()},
    }
    fingerprint = checkpoint.fingerprint(resolved_config(cfg))
    ckpt, run_id = None, None
    if cfg.get("ckpt_path"):  # resolved before a run opens: a wrong path leaves no run behind
        ckpt = checkpoint.resolve(str(cfg.ckpt_path), checkpoint_search_dirs(cfg), fingerprint)
        meta = checkpoint.read_meta(ckpt)
        run_id = meta.get("run_id")
        tags["resumed_from"] = f"{ckpt} (epoch {meta['epoch']})"
        log.info("resuming %s after epoch %d", ckpt, meta["epoch"])
    with _sigterm_as_interrupt(), logger.run(tags=tags, run_id=run_id):
        return _train_in_run(cfg, logger, ckpt, fingerprint)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler, `kill`) ends the run like Ctrl-C: marked KILLED, not left RUNNING."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _log_figure(logger: Any, figure: Any, name: str) -> None:
    import matplotlib.pyplot as plt

    logger.log_figure(figure, name)
    plt.close(figure)


def _log_model(logger: Any, classifier: Any, trainer: Any, datamodule: Any, cfg: Any) -> None:
    """The trained model with what predicting needs: class names, thresholds, image size."""
    import tempfile

    meta = {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "class_names": datamodule.class_names,
        "thresholds": [float(t) for t in trainer.thresholds],
        "image_size": datamodule.image_size,
        "resize": datamodule.resize,
    }
    with tempfile.TemporaryDirectory(prefix="taco-model-") as tmp:
        folder = classifier.save(Path(tmp) / "model", meta)
        logger.log_artifacts(folder, "model")


def optimized_metrics() -> list[str]:
    """What `optimized_metric` may name: the final validation and the test summaries."""
    from taco.metrics import Evaluation

    return [f"{part}/{name}" for part in ("val/final", "test") for name in Evaluation.SUMMARY]


def _train_in_run(cfg: DictConfig, logger: Any, ckpt: Path | None, fingerprint: dict) -> float:
    from hydra.utils import instantiate

    from taco import metrics, plots

    resolved = resolved_config(cfg)
    if not getattr(logger, "resumed", False):  # a resumed run keeps the params it started with
        params = {k: v for k, v in resolved.items() if k not in ("paths", "ckpt_path")}
        logger.log_params(flatten(params))
        logger.log_text(OmegaConf.to_yaml(resolved), "config/config.yaml")
    out = output_dir(cfg)
    if out is not None and (out / ".hydra").is_dir():
        logger.log_artifacts(out / ".hydra", ".hydra")

    # Build every part first: a config mistake surfaces before any data work or training.
    if cfg.optimized_metric not in optimized_metrics():
        raise ConfigError(
            f"optimized_metric must be one of {optimized_metrics()}; got {cfg.optimized_metric!r}"
        )
    augmentation = _instantiate_optional(cfg.get("augmentation"))
    datamodule = instantiate(
        cfg.dataset,
        image_size=cfg.model.image_size,
        cache_dir=cfg.paths.cache_dir,
        augmentation=augmentation,
        seed=cfg.seed,
    )
    trainer = instantiate(cfg.trainer, callbacks=instantiate_callbacks(cfg.get("callbacks")))
    trainer.fingerprint = fingerprint
    classifier = instantiate(cfg.model.classifier)
    classifier.check(int(cfg.model.image_size))
    trainer.configure_hardware()
    profiler = trainer.profiler
    logger = trainer.profiled(logger)

    with profiler.section("data_setup"):
        datamodule.prepare_data()
        datamodule.setup()
    logger.set_tags({"dataset_sha256": datamodule.labelset.content_hash[:16]})
    logger.log_dict(datamodule.split_record(), "split.json")
    logger.log_metrics({"data/skipped_images": len(datamodule.skipped)})
    if datamodule.skipped:
        logger.log_dict([b.__dict__ for b in datamodule.skipped], "skipped_images.json")
    if augmentation is not None:
        _log_figure(
            logger,
            plots.augmentation_preview(datamodule.sample("train", 6), copy.deepcopy(augmentation)),
            "plots/augmentation_preview.png",
        )

    trainer.seed_everything(cfg.seed)
    try:
        trainer.fit(classifier, datamodule, logger, ckpt_path=ckpt)
    except KeyboardInterrupt:
        if trainer.last_checkpoint is not None:
            print(
                f"\ninterrupted after epoch {trainer.last_epoch}, saved in "
                f"{trainer.last_checkpoint}; continue this run with the same overrides plus "
                "ckpt_path=last",
                file=sys.stderr,
            )
        raise
    val = trainer.validate(classifier, datamodule, logger)
    test = trainer.test(classifier, datamodule, logger)

    if logger.active:
        with profiler.section("log_model"):
            _log_model(logger, classifier, trainer, datamodule, cfg)

    floors = metrics.floors(
        datamodule.labels("train"), datamodule.labels("test"), datamodule.class_names, cfg.seed
    )
    logger.log_metrics({f"test/{k}": v for k, v in floors.items()})
    table = test.table()
    logger.log_text(table, "per_class_test.md")
    title = f"{cfg.model.name} on {cfg.dataset.name}: test F1"
    figure = plots.per_class_f1(test.class_names, test.f1, test.support, title)
    _log_figure(logger, figure, "plots/per_class_f1_test.png")

    print(f"\nTest set, {cfg.model.name} on {cfg.dataset.name} (thresholds tuned on validation):")
    print(table)
    print(
        f"floors on the same test set: predict every class macro F1 "
        f"{floors['floor/f1_macro_all']:.3f}, predict at training prevalence "
        f"{floors['floor/f1_macro_prevalence']:.3f}"
    )
    if logger.run_id:
        print(f"MLflow run {logger.run_id} ({logger.tracking_uri})")

    summary = {**val.summary("val/final"), **test.summary("test")}
    if profiler.enabled:
        table = profiler.table()
        logger.log_metrics(profiler.metrics())
        logger.log_text(table, "profile.md")
        print(f"\nTime per stage (trainer.profiler=simple):\n{table}")
    trainer.mark_complete()
    return summary[cfg.optimized_metric]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    from taco.sweep import in_multirun

    if in_multirun():
        return _sweep_job(cfg)
    with exit_on_user_error("taco-train"):
        return train(cfg)


def _sweep_job(cfg: DictConfig) -> float:
    """A failed job of a sweep is logged (its run FAILED) and scores NaN; the other jobs go on,
    and the sweep's parent run ends FAILED naming it. Ctrl-C still stops the whole sweep."""
    from taco.errors import TacoError

    try:
        return train(cfg)
    except Exception as exc:
        user_error = isinstance(exc, TacoError)
        log.error("job failed: %s: %s", type(exc).__name__, exc, exc_info=not user_error)
        return float("nan")


if __name__ == "__main__":
    main()

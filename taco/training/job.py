"""A training job: every part built from the config and checked before a run opens, then fit,
validate and test in one run. `taco-train` (`taco.cli.train`) calls `train` for a single job and
`taco.sweeps.job` for each job of a multirun.

TensorFlow, Keras and MLflow load inside `build_job`, after the process is set up for them
(`taco.process`); `taco-train` imports this module only once it runs a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from taco.config import (
    build,
    flatten,
    in_multirun,
    job_number,
    job_overrides,
    output_dir,
    resolved_config,
    threads_per_job,
)
from taco.errors import ConfigError
from taco.metrics import summary_names
from taco.process import (
    import_keras,
    limit_cpu_isa,
    reset_for_job,
    trains_on_gpu,
    use_backend,
    use_compile_cache,
)
from taco.schema import check_augmentation, check_config
from taco.signals import sigterm_as_interrupt
from taco.tracking.lineage import job_run_name, job_tags
from taco.tracking.provenance import git_state
from taco.tracking.tags import Tag
from taco.training import checkpoint
from taco.training.checkpoint import Resume
from taco.training.hardware import check_hardware

if TYPE_CHECKING:
    from taco.models.base import BaseClassifier
    from taco.protocols import DataModule
    from taco.tracking.base import BaseLogger
    from taco.training.trainer import Trainer


@dataclass
class Job:
    """Every part of a training job, built and checked before a run opens."""

    datamodule: DataModule
    classifier: BaseClassifier
    trainer: Trainer
    logger: BaseLogger
    tags: dict[str, str]
    resolved: dict  # the config, resolved once
    resume: Resume = field(default_factory=Resume)  # what ckpt_path resolved to


def train(cfg: DictConfig, job: Job | None = None) -> float:
    """One training job (its parts built here unless given); returns `cfg.optimized_metric`."""
    job = job or build_job(cfg)
    resume = job.resume
    with sigterm_as_interrupt(), job.logger.run(tags=job.tags, run_id=resume.run_id) as logger:
        log_config(logger, job.resolved, output_dir(cfg))
        job.trainer.fit(job.classifier, job.datamodule, logger, ckpt_path=resume.path)
        val = job.trainer.validate(job.classifier, job.datamodule)
        test = job.trainer.test(job.classifier, job.datamodule)
    if logger.run_id:
        print(f"MLflow run {logger.run_id} ({logger.tracking_uri})")
    return {**val.summary("val/final"), **test.summary("test")}[cfg.optimized_metric]


def build_job(cfg: DictConfig) -> Job:
    """Build and check every part: a config mistake fails here, before any data work or run."""
    resolved = resolved_config(cfg)
    check_config(resolved)  # types and ranges: refused in a second, before anything is built
    check_augmentation(resolved.get("augmentation"))  # albumentations checks its own arguments
    use_backend(cfg.trainer.get("backend") or "tensorflow")  # before anything imports Keras
    check_hardware(resolved["trainer"])  # what this machine cannot run, also in a second
    limit_cpu_isa(cfg.trainer.get("cpu_isa"))
    use_compile_cache(cfg.trainer.get("compile_cache"))
    import_keras()  # its backend's start-up noise filtered
    name = cfg.logger.get("run_name")
    logger = build(cfg.logger, **({"run_name": job_run_name(name)} if name else {}))
    logger.check()  # the store: created once, or the server answers (seconds, not minutes)
    share = threads_per_job()
    reset_for_job(
        cfg.trainer.get("cpu_threads") or share,
        job_number(),
        share,
        on_gpu=trains_on_gpu(cfg.trainer.get("accelerator")),
    )
    if cfg.optimized_metric not in summary_names():
        raise ConfigError(
            f"optimized_metric must be one of {summary_names()}; got {cfg.optimized_metric!r}"
        )
    trainer = build(trainer_node(cfg.trainer), callbacks=build_callbacks(cfg.get("callbacks")))
    classifier = build(cfg.model.classifier)
    classifier.check(int(cfg.model.image_size))
    trainer.connect(classifier)
    trainer.configure_hardware()  # devices first: an impossible choice fails before data work
    trainer.fingerprint = checkpoint.fingerprint(resolved)
    job = Job(build(cfg.dataset), classifier, trainer, logger, run_tags(cfg), resolved)
    job.datamodule.check()  # annotations, class map, split: before a run opens
    if cfg.get("ckpt_path"):  # resolved by the trainer's checkpoint connector
        job.resume = trainer.checkpoints.resolve(
            cfg.ckpt_path, search_dirs(cfg), in_multirun(), store=logger.tracking_uri
        )
        if job.resume.path is not None:
            job.tags["resumed_from"] = f"{job.resume.path} (epoch {job.resume.epoch})"
    return job


# `trainer.*` keys for the process, not the Trainer: applied above, before Keras loads
PROCESS_SETTINGS = ("cpu_threads", "cpu_isa", "compile_cache")


def trainer_node(node: DictConfig) -> DictConfig:
    """`trainer` without the keys `taco.process` applies (the Trainer never sees them)."""
    resolved = OmegaConf.to_container(node, resolve=True)  # `${seed}` needs the whole config
    return OmegaConf.create({k: v for k, v in resolved.items() if k not in PROCESS_SETTINGS})


def build_callbacks(node: Any) -> list[Any]:
    """`callbacks.<name>: {_target_: ...}` -> objects; a null entry is switched off."""
    callbacks = []
    for name, spec in (node or {}).items():
        if spec is None:
            continue
        if "_target_" not in spec:
            raise ConfigError(f"callbacks.{name} has no _target_: name the class to build")
        callbacks.append(build(spec))
    return callbacks


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """What a run is tagged with: dataset, model, task, git state, overrides, sweep, user tags."""
    overrides = job_overrides()
    return {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "task": cfg.task_name,
        **git_state(Path(cfg.paths.root_dir)),
        **({Tag.HYDRA_OVERRIDES: overrides[:5000] or "(none)"} if overrides is not None else {}),
        **job_tags(),
        **{str(k): str(v) for k, v in (cfg.get("tags") or {}).items()},
    }


def log_config(logger: BaseLogger, resolved: dict, out: Path | None) -> None:
    """Params and the resolved config (a resumed run keeps those it started with) and Hydra's
    own record of the job (`.hydra/`)."""
    if not logger.resumed:  # a study's per-model lookup tables are not this job's params
        params = {k: v for k, v in resolved.items() if k not in ("paths", "ckpt_path", "study")}
        logger.log_params(flatten(params))
        logger.log_text(OmegaConf.to_yaml(resolved), "config/config.yaml")
    if out is not None and (out / ".hydra").is_dir():
        logger.log_artifacts(out / ".hydra", ".hydra")


def search_dirs(cfg: DictConfig) -> list[Path]:
    """Where `ckpt_path=last` looks. A sweep's job: its sweep folder only, so a re-run sweep
    takes nothing of another sweep (the resume line of an interrupted sweep names its folder,
    `hydra.sweep.dir=...`); a single run: its folder, then every run and sweep folder."""
    if in_multirun():
        return [Path(str(HydraConfig.get().sweep.dir)).resolve()]
    root = Path(cfg.paths.root_dir)
    dirs = [output_dir(cfg), root / "outputs", root / "multirun"]
    return list(dict.fromkeys(d for d in dirs if d is not None))

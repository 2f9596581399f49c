"""The run tags taco reads back, named once: how runs of a sweep find their parent, a stale run
its process, a search its trials, a model its source run and code. Tags are MLflow's
key-value pairs on a run; a reader that filters on one uses the name here, never a literal."""

from __future__ import annotations


class Tag:
    """The names, as a namespace (`Tag.SWEEP`): a run's own `tags` dict stays `tags`."""

    # lineage: a sweep's parent run and its jobs
    SWEEP = "taco.sweep"  # "parent" on a sweep's parent run
    PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: nests a job under its parent in the UI
    SWEEP_JOB = "sweep_job"  # the job's number in its sweep
    SWEEP_DIR = "sweep_dir"
    HYDRA_OVERRIDES = "hydra_overrides"  # the job's overrides: what a variant is

    # provenance: the code and the process behind a run
    GIT_COMMIT = "git_commit"
    GIT_DIRTY = "git_dirty"
    HOST = "host"  # with PID: whether a RUNNING run's process is alive (`tracking.stale`)
    PID = "pid"
    SOURCE_RUN = "source_run_id"  # an evaluation's training run

    # a hyperparameter search (`hparams_search=optuna`)
    OPTUNA_STUDY = "optuna.study"
    OPTUNA_TRIAL = "optuna.trial"
    OPTUNA_STATE = "optuna.state"  # COMPLETE or PRUNED
    OPTUNA_PRUNED_EPOCH = "optuna.pruned_epoch"
    OPTUNA_BEST_TRIAL = "optuna.best_trial"  # on the search's parent run

    # MLflow 3's UI opens an experiment on the view its kind names: without this tag it
    # guesses, and opens an experiment of training runs on the (empty) GenAI traces page
    EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

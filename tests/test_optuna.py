"""`hparams_search=optuna`: taco's Optuna 5 sweeper. The search space in Hydra's syntax and its
errors, a trial pruned through the Trainer's callback, its run's tags, workers that never wait for
each other, and a killed search continued by the same command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from taco.errors import ConfigError
from taco.sweeps.search_space import search_space

ROOT = Path(__file__).resolve().parents[1]


def test_search_space_reads_hydras_sweep_syntax():
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space = search_space(
        {
            "lr": "tag(log, interval(0.0005, 0.02))",
            "units": "choice(32, 64)",
            "blocks": "range(1, 4)",
            "width": "int(interval(8, 64))",
            "name": "a,b",
        },
        ["units=choice(16, 32)", "seed=3"],  # the command line wins; a plain one is fixed
    )
    d = space.distributions
    assert d["lr"] == FloatDistribution(0.0005, 0.02, log=True)
    assert d["units"] == CategoricalDistribution([16, 32])
    assert d["blocks"] == IntDistribution(1, 3)
    assert d["width"] == IntDistribution(8, 64)
    assert d["name"] == CategoricalDistribution(["a", "b"])
    assert space.fixed == ["seed=3"]
    params = {"lr": 0.001, "units": 16, "blocks": 2, "width": 9, "name": "b"}
    assert space.overrides(params) == [
        "seed=3",
        "lr=0.001",
        "units=16",
        "blocks=2",
        "width=9",
        "name=b",
    ]
    assert search_space({"k": "choice(1, 2)", "r": "range(0, 3)"}, []).grid() == {
        "k": [1, 2],
        "r": [0, 1, 2],
    }


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("x=choice()", "x=choice(): ValueError while evaluating 'choice()': empty choice"),
        ("x=interval(1, 0)", "x: interval(1.0, 0.0) is empty: the lower bound comes first"),
        ("x=tag(log, interval(0, 1))", "x: a log interval needs a lower bound above 0"),
        ("x=range(3, 1)", "x: range(3, 1, 1) is empty"),
        ("x=choice(1, 1)", "x: a value is listed twice"),
    ],
)
def test_a_wrong_space_is_one_line_naming_the_parameter(param, said):
    with pytest.raises(ConfigError) as error:
        search_space({}, [param])
    assert said in str(error.value) and "\n" not in str(error.value)


def test_grid_needs_choices_and_ranges():
    with pytest.raises(ConfigError, match="the grid sampler needs choice"):
        search_space({"lr": "interval(0.1, 0.2)"}, []).grid()


@pytest.mark.parametrize(
    ("override", "said"),
    [
        (
            "model.classifier.build.dropout=interval(1, 0)",
            "hydra.sweeper.params.model.classifier.build.dropout: interval(1.0, 0.0) is empty",
        ),
        (
            "model.classifier.build.nope=choice(1, 2)",
            "hydra.sweeper.params.model.classifier.build.nope: no such key in the config",
        ),
        (  # the schema's range, at the interval's upper bound
            "model.classifier.build.dropout=interval(0.1, 1.5)",
            "hydra.sweeper.params.model.classifier.build.dropout: a trial may take 1.5, and "
            "then model.classifier.build.dropout=1.5 is not allowed",
        ),
        ("optimized_metric=test/f1_macro", "optimized_metric=test/f1_macro: a search is judged"),
    ],
)
def test_a_wrong_search_is_refused_before_any_trial_or_run(
    override, said, command, tmp_path, mlflow_uri
):
    proc = command("taco-train", "hparams_search=optuna", override, f"hydra.sweep.dir={tmp_path}/m")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taco-train: error: "), lines
    assert said in lines[0], lines[0]
    assert not mlflow.MlflowClient(mlflow_uri).search_runs(["0"])
    assert not (tmp_path / "optuna.db").exists()  # no study either


class _Tags:
    """The run logger's tag calls, as the Trainer's logger receives them."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def set_tags(self, tags):
        self.tags.update(tags)


@pytest.mark.parametrize(("now", "pruned"), [(0.10, True), (0.95, False)])
def test_a_trial_worse_than_the_median_is_pruned_and_stops_the_fit(tmp_path, now, pruned):
    import optuna

    from taco.sweeps.pruning import PRUNED_ATTR, OptunaPruning

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for value in (0.5, 0.6, 0.7):  # three earlier trials, 0.6 the median at epoch 1
        study.add_trial(
            optuna.trial.create_trial(value=value, intermediate_values={1: value, 2: value})
        )
    number = study.ask().number
    callback = OptunaPruning(
        trial=number,
        storage=url,
        study_name="s",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    trainer = SimpleNamespace(callback_metrics={}, should_stop=False, logger=_Tags())
    callback.on_fit_start(trainer, None)
    assert trainer.logger.tags == {"optuna.trial": str(number), "optuna.study": "s"}
    trainer.callback_metrics = {"val/f1_macro": now, "val/loss": 0.3}
    callback.on_train_epoch_end(trainer, None, 0)
    frozen = study.trials[number]
    assert frozen.intermediate_values == {1: now}
    assert trainer.should_stop is pruned
    assert (frozen.user_attrs.get(PRUNED_ATTR) == 1) is pruned
    if pruned:
        assert trainer.logger.tags["optuna.state"] == "PRUNED"
        assert trainer.logger.tags["optuna.pruned_epoch"] == "1"
    else:
        callback.on_test_end(trainer, None, None)
        assert trainer.logger.tags["optuna.state"] == "COMPLETE"


def _search(tmp_path, tiny_overrides, *extra):
    base = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    return [
        "-m",
        *base,
        f"hydra.sweep.dir={tmp_path}/multirun",
        "hparams_search=optuna",
        "hydra.sweeper.sampler.n_startup_trials=1",
        *extra,
    ]


def test_a_pruned_search_tags_its_runs_and_logs_the_study_to_the_parent(
    tmp_path, tiny_overrides, mlflow_uri, command
):
    import optuna

    # every trial below F1 0.99 after its first epoch is pruned: two trials, both stopped at 1
    pruner = [
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "~hydra.sweeper.pruner.n_startup_trials",
        "~hydra.sweeper.pruner.n_warmup_steps",
        "+hydra.sweeper.pruner.lower=0.99",
    ]
    args = _search(tmp_path, tiny_overrides, "hydra.sweeper.n_trials=2", *pruner)
    proc = command("taco-train", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("taco.sweep") == "parent"]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED" and len(children) == 2
    for child in children:
        tags = child.data.tags
        assert child.info.status == "FINISHED"  # pruned, not failed: validated and tested
        assert tags["optuna.state"] == "PRUNED" and tags["optuna.pruned_epoch"] == "1"
        assert child.data.metrics["epochs_trained"] == 1  # of 2
        assert "test/f1_macro" in child.data.metrics
    assert sorted(c.data.tags["optuna.trial"] for c in children) == ["0", "1"]
    assert parent.data.metrics["optuna/trials_pruned"] == 2
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/intermediate_values.png"} <= plots
    assert "optuna/best_so_far.png" not in plots  # no trial completed: no best to show
    study = optuna.load_study(study_name="taco_cnn", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert study.user_attrs["mlflow_parent_run"] == parent.info.run_id


def _barrier_search(folder: Path, *overrides: str):
    """`tests/optuna_barrier_app.py` searched with taco's sweeper in `folder`; its study."""
    import optuna

    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "optuna_barrier_app.py"),
            "-m",
            f"hydra.searchpath=[file://{ROOT}/conf]",
            f"folder={folder}",
            f"hydra.sweeper.storage=sqlite:///{folder}/optuna.db",
            f"hydra.sweep.dir={folder}/sweep",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return optuna.load_study(study_name="taco", storage=f"sqlite:///{folder}/optuna.db")


@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra.launcher.n_jobs=2"],  # taco's joblib launcher: trials as workers free up
        # a launcher of batches only (submitit, Ray): one job per call, on 2 threads
        pytest.param(
            ["hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2"], marks=pytest.mark.slow
        ),
    ],
    ids=["joblib", "submitit_local"],
)
def test_a_free_worker_starts_the_next_trial_without_waiting_for_the_other(tmp_path, launcher):
    # trial 0 ends only once trials 1-4 have run: a batched sweeper would start trial 2 only
    # after trial 0 ended, and trial 0 would time out (-1)
    import yaml

    if "submitit" in launcher[0]:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="make setup-slurm")

    study = _barrier_search(
        tmp_path, "hydra.sweeper.n_trials=5", *launcher, "x=interval(0, 0.9)", "wait_s=100"
    )
    assert study.trials[0].value == 1.0, "trial 0 timed out: the other worker waited for it"
    workers = yaml.safe_load((tmp_path / "sweep" / "workers.yaml").read_text())["workers"]
    assert sorted(w["jobs"] for w in workers) == [1, 4]
    assert all(0 <= w["idle_share"] <= 1 for w in workers)


@pytest.mark.subprocess
@pytest.mark.slow  # about a minute: `make test-all`
def test_a_killed_search_is_continued_by_the_same_command(tmp_path, tiny_overrides, mlflow_uri):
    import optuna

    args = _search(
        tmp_path,
        tiny_overrides,
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=3",
    )
    exe = [str(Path(sys.executable).parent / "taco-train")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri}
    storage = f"sqlite:///{tmp_path}/optuna.db"

    def states():
        try:
            study = optuna.load_study(study_name="taco_cnn", storage=storage)
        except Exception:
            return []
        return [t.state.name for t in study.trials]

    first = subprocess.Popen(
        [*exe, *args, "hydra.sweeper.n_trials=3"], env=env, start_new_session=True
    )

    def running_run() -> bool:  # the second trial's job has opened its MLflow run
        try:
            client = mlflow.MlflowClient(mlflow_uri)
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        except Exception:
            return False
        return any(r.info.status == "RUNNING" and "mlflow.parentRunId" in r.data.tags for r in runs)

    deadline = time.time() + 300
    while not ("COMPLETE" in states() and "RUNNING" in states() and running_run()):
        assert first.poll() is None and time.time() < deadline, states()
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert states().count("RUNNING") == 1

    again = subprocess.run([*exe, *args, "hydra.sweeper.n_trials=3"], env=env, timeout=600)
    assert again.returncode == 0
    assert sorted(states()) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]  # asked again
    more = subprocess.run([*exe, *args, "hydra.sweeper.n_trials=4"], env=env, timeout=600)
    assert more.returncode == 0
    assert states().count("COMPLETE") == 4 and len(states()) == 5  # only the missing one

    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    parents = [r for r in runs if r.data.tags.get("taco.sweep") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # one, continued
    children = [r for r in runs if r is not parents[0]]
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED", "FINISHED", "FINISHED", "FINISHED"]
    assert parents[0].data.metrics["optuna/trials_complete"] == 4


@pytest.mark.parametrize("sampler", ["grid", "cmaes"])  # TPE: the searches above
def test_each_sampler_runs_seeded_and_the_grid_each_point_once(tmp_path, sampler):

    space = "x=choice(0.1, 0.2, 0.3)" if sampler == "grid" else "x=interval(0, 0.9)"

    def run(folder: Path) -> list:
        folder.mkdir()
        study = _barrier_search(
            folder,
            f"hydra/sweeper/sampler={sampler}",
            "hydra.sweeper.n_trials=4",
            "hydra/launcher=basic",
            space,
            "wait_s=0",  # one worker: trial 0 does not wait for the others
        )
        return [t.params["x"] for t in study.trials]

    drawn = run(tmp_path / "a")
    assert drawn == run(tmp_path / "b")  # seeded: the same trials again
    if sampler == "grid":
        assert sorted(drawn) == [0.1, 0.2, 0.3]  # every point once, then it stops (not 4)
    else:
        assert len(drawn) == 4 and len(set(drawn)) == 4

"""Multirun sweeps: a parent MLflow run per sweep, child runs per job, launchers, Optuna, and
the comparison report read back from the store."""

import json
from pathlib import Path

import mlflow
import pytest

from taco.cli.compare import main as compare_main


def _sweep(run, tiny_overrides, tmp_path, *overrides, own_data=False):
    """`taco-train -m` on the tiny settings, through `run`: the `command` fixture (in this
    process; the basic launcher runs its jobs here too) or `process` (a fresh one)."""
    base = tiny_overrides(tmp_path, own_data=own_data)
    base = [o for o in base if not o.startswith("paths.output_dir")]
    return run("taco-train", "-m", *base, f"hydra.sweep.dir={tmp_path}/multirun", *overrides)


def _family(uri, experiment="taco"):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("taco.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1  # every other run is a child of the sweep
    return client, parent, children


def test_sweep_parent_children_and_comparison_with_seeds(
    tmp_path, tiny_overrides, mlflow_uri, command, capfd, monkeypatch
):
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)  # as in a shell
    proc = _sweep(
        command, tiny_overrides, tmp_path, "model.classifier.build.dense_units=8,16", "seed=1,2"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Downloading artifacts" not in proc.stdout + proc.stderr  # each job's console: quiet
    client, parent, children = _family(mlflow_uri)
    assert parent.info.status == "FINISHED" and len(children) == 4
    # names a person can tell apart: the study and its start; model-dataset and what varies
    assert parent.info.run_name.startswith("sweep-train 20")
    assert sorted(c.info.run_name for c in children) == [
        f"cnn-synthetic-model.classifier.build.dense_units={units}-seed={seed}"
        for units in (16, 8)
        for seed in (1, 2)
    ]
    assert all(c.info.status == "FINISHED" for c in children)
    assert "seed=1,2" in parent.data.tags["hydra_overrides"]
    assert parent.data.metrics["sweep/jobs_finished"] == 4
    saved = json.loads((tmp_path / "multirun" / "mlflow_parent_run.json").read_text())
    assert saved["run_id"] == parent.info.run_id

    assert compare_main(["--out", str(tmp_path / "cmp")]) == 0
    table = capfd.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| class"))
    assert "model.classifier.build.dense_units=8" in header and "dense_units=16" in header
    assert " [" in table and "] " in table  # two seeds per variant: mean [t-interval]
    macro = next(line for line in table.splitlines() if line.startswith("| **macro F1**"))
    best = macro.split("|")[3] + macro.split("|")[4]
    # the better variant is marked: italics on one test split, ≈ within the noise
    assert "*" in best or "≈" in best
    csv = (tmp_path / "cmp" / "comparison.csv").read_text().splitlines()
    assert csv[0].startswith("class,support,") and len(csv) == 1 + 28 + 2
    assert all(row.split(",")[1].isdigit() for row in csv[1:29])  # one test set for all seeds
    assert (tmp_path / "cmp" / "f1_heatmap.png").stat().st_size > 10_000
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    names = ("comparison.md", "comparison.csv", "f1_heatmap.png", "table.json")
    assert logged == {f"comparison/{n}" for n in names}
    # the table as MLflow shows it, and summary metrics per variant
    path = client.download_artifacts(parent.info.run_id, "comparison/table.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    assert table["columns"][:2] == ["class", "support"] and len(table["data"]) == 28 + 2
    assert all(row[1] is not None for row in table["data"][:28])  # classes have a support
    assert [row[0] for row in table["data"][28:]] == ["macro F1", "micro F1"]
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert len([k for k in metrics if k.startswith("compare/f1_micro/")]) == 2
    # a study's report says where its numbers were computed
    assert compare_main(["--report", str(tmp_path / "study"), "--no-log"]) == 0
    report = (tmp_path / "study" / "REPORT.md").read_text()
    assert "- hardware: CPU " in report and " cores, GPU " in report
    assert "- versions: tensorflow " in report
    # make reproduce: the committed numbers against a sweep's, each within its stated spread
    capfd.readouterr()
    check = ["--check", str(tmp_path / "study"), "--experiment", "taco", "--no-log"]
    check += ["--out", str(tmp_path / "checked")]  # not the checkout's outputs/compare
    assert compare_main(check) == 0
    out = capfd.readouterr().out
    assert "mode: identical (same CPU fingerprint (" in out  # the machine that wrote the report
    assert "identical mode: all 60 numbers equal to the committed ones" in out
    committed = tmp_path / "study" / "comparison.csv"
    lines = committed.read_text().splitlines()
    macro = next(i for i, line in enumerate(lines) if line.startswith("macro F1,"))
    cells = lines[macro].split(",")
    cells[2] = f"{float(cells[2]) + 0.5:.4f}"  # the first variant's macro F1 mean
    lines[macro] = ",".join(cells)
    committed.write_text("\n".join(lines) + "\n")
    assert compare_main(check) == 1
    out, err = capfd.readouterr()
    assert "1 of 60 deciding number(s) not equal to the committed one" in err
    moved = next(line for line in out.splitlines() if line.startswith("| macro F1 |"))
    assert "| -0.500 |" in moved and moved.endswith("| **no** |"), moved


def test_a_failed_job_fails_the_parent_and_names_it(tmp_path, tiny_overrides, mlflow_uri, command):
    # a value the schema allows (any string) that fails when the job is built
    proc = _sweep(
        command, tiny_overrides, tmp_path, "callbacks.early_stopping.monitor=val/f1_macro,val/nope"
    )
    assert proc.returncode != 0
    assert "1 job(s) failed" in proc.stderr + proc.stdout
    client, parent, children = _family(mlflow_uri)
    assert parent.info.status == "FAILED"
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    assert "callbacks.early_stopping.monitor=val/nope" in parent.data.tags["failed_jobs"]
    assert "val/nope" in parent.data.tags["failed_jobs"].split("FAILED")[1]


@pytest.mark.slow  # 22 s: `make test-all`; the default run keeps under 10 min on 2 cores
def test_optuna_search_logs_trials_as_children_and_the_best_to_the_parent(
    tmp_path, tiny_overrides, mlflow_uri, command
):
    proc = _sweep(
        command,
        tiny_overrides,
        tmp_path,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, parent, children = _family(mlflow_uri)
    assert len(children) == 3 and parent.info.status == "FINISHED"
    best = {k: v for k, v in parent.data.tags.items() if k.startswith("best/")}
    assert set(best) == {  # dense_units is fixed on the command line, so not searched
        "best/model.classifier.learning_rate",
        "best/model.classifier.build.dropout",
        "best/model.classifier.build.convs_per_block",
    }
    values = [c.data.metrics["val/final/f1_macro"] for c in children]
    assert parent.data.metrics["best_value"] == pytest.approx(max(values))
    # taco-compare on the search: the best trial's table, said to be chosen on validation
    assert compare_main(["--out", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "search.md").read_text()
    best = parent.data.tags["optuna.best_trial"]
    assert f"trial {best} is the best of 3" in text and "chosen on validation" in text
    (best_run,) = [c for c in children if c.data.tags["optuna.trial"] == best]
    assert f"| macro F1 |  | {best_run.data.metrics['test/f1_macro']:.3f} |" in text


@pytest.mark.subprocess
@pytest.mark.slow
def test_submitit_local_launcher_keeps_jobs_children(tmp_path, tiny_overrides, mlflow_uri, process):
    proc = _sweep(process, tiny_overrides, tmp_path, "hydra/launcher=submitit_local", "seed=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, parent, children = _family(mlflow_uri)
    assert parent.info.status == "FINISHED" and len(children) == 2


def test_compare_models_experiment_composes_per_model_settings(compose_cfg):
    sizes = {}
    for model in ("cnn", "vgg16", "xception", "xception_rf"):
        cfg = compose_cfg(["experiment=compare_models", f"model={model}"])
        sizes[model] = (cfg.model.image_size, cfg.trainer.max_epochs, cfg.model.get("weights"))
        assert cfg.hydra.mode.name == "MULTIRUN" if "hydra" in cfg else True
        assert cfg.logger.experiment_name == "compare_models"
    assert sizes["vgg16"][0] == 32 and sizes["xception"][0] == 72 and sizes["cnn"][0] == 64
    assert all(w is None for _, _, w in sizes.values())
    # a job logs its own settings as params, not the study's table of every model's
    from taco.config import resolved_config
    from taco.tracking.base import NullLogger
    from taco.training.job import log_config

    class Params(NullLogger):
        def log_params(self, params):
            self.params = params

    logger = Params()
    log_config(logger, resolved_config(cfg), None)
    assert str(logger.params["model.image_size"]) == str(cfg.model.image_size)  # its own
    assert not any(k.startswith("study.") for k in logger.params)


def test_repeated_cross_validation_draws_a_new_split_with_each_training_seed(compose_cfg):
    for seed in (42, 43):
        cfg = compose_cfg(["experiment=compare_models_rcv", "model=vgg16", f"seed={seed}"])
        assert cfg.dataset.split_seed == seed and cfg.trainer.seed == seed
        assert cfg.dataset.folds == 5 and cfg.model.image_size == 32  # compare_models' sizes
        assert cfg.logger.experiment_name == "compare_models_rcv"


def test_compare_without_a_sweep_says_what_to_do(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/none.db"
    with pytest.raises(SystemExit) as exit_:
        compare_main(["--tracking-uri", uri])
    assert exit_.value.code == 1 and "make compare" in capsys.readouterr().err


@pytest.mark.subprocess
@pytest.mark.slow
def test_ray_launcher_on_a_local_instance_keeps_jobs_children(
    tmp_path, tiny_overrides, mlflow_uri, process
):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="make setup-ray")
    proc = _sweep(
        process,
        tiny_overrides,
        tmp_path,
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
        "hydra.launcher.ray.remote.num_cpus=1",
        "seed=1,2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, parent, children = _family(mlflow_uri)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert "RayLauncher" in parent.data.tags["launcher"]


@pytest.mark.subprocess
@pytest.mark.slow  # two sweeps of a 64 px CNN: 40 s
def test_basic_and_joblib_launchers_give_the_same_per_class_f1(
    tmp_path, tiny_overrides, mlflow_uri, process
):
    """trainer.cpu_threads fixes each job's TensorFlow threads, whatever the launcher: a joblib
    job (its share of the cores would be fewer threads) does the same arithmetic as a basic one."""
    setting = [
        "dataset.generator.num_images=200",
        "model.image_size=64",
        "trainer.max_epochs=2",
        "trainer.cpu_threads=2",
        "seed=42,43",
    ]
    own = {"own_data": True}  # 200 images: a data set of its own
    basic = _sweep(
        process, tiny_overrides, tmp_path / "basic", *setting, "logger.experiment_name=basic", **own
    )
    joblib = _sweep(
        process,
        tiny_overrides,
        tmp_path / "joblib",
        *setting,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "logger.experiment_name=joblib",
        **own,
    )
    assert basic.returncode == 0 and joblib.returncode == 0, basic.stderr[-2000:] + joblib.stderr
    per_class = {}
    for launcher in ("basic", "joblib"):
        _, _, children = _family(mlflow_uri, launcher)
        for run in children:
            scores = {k: v for k, v in run.data.metrics.items() if k.startswith("test/f1/")}
            per_class[launcher, run.data.params["seed"]] = scores
    assert per_class["basic", "42"] and per_class["basic", "42"] == per_class["joblib", "42"]
    assert per_class["basic", "43"] == per_class["joblib", "43"]


def test_cross_validation_sweep_pools_folds_with_intervals_and_paired_tests(
    tmp_path, tiny_overrides, mlflow_uri, command, capfd
):
    import numpy as np
    from sklearn.metrics import f1_score

    from taco.metrics import sanitize

    # repeated: two fold splits (split seeds 7 and 8), each with its own training seed
    proc = _sweep(command, tiny_overrides,
        tmp_path, "dataset.folds=2", "dataset.fold=0,1", "model.classifier.build.dense_units=4,16",
        "seed=7,8", "dataset.split_seed=${seed}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, parent, children = _family(mlflow_uri)
    assert len(children) == 8
    args = ["--report", str(tmp_path / "cv"), "--resamples", "300", "--permutations", "300"]
    assert compare_main(args) == 0
    report = (tmp_path / "cv" / "REPORT.md").read_text()
    # the recipe level: 2 repetitions x 2 folds, corrected t-test, beside the pooled level
    assert "## This recipe on this data" in report and "## These trained models" in report
    assert "2 repetitions x 2 folds: 4 folds every recipe ran" in report
    assert "| A vs B | macro F1 A - B [corrected 95% interval] | t (df) |" in report
    assert "pools the repetition with split seed 7" in report
    children = [c for c in children if c.data.params["dataset.split_seed"] == "7"]
    assert "2-fold cross-validation that held it out (48 images" in report
    assert "Classes with a significant winner: " in report
    assert "| significantly best (lead) |" in report and "| floor: every class |" in report
    assert "*Question answered: are these trained models better" in report
    assert "| A vs B | macro F1 A - B [95% interval] | p |" in report
    assert (tmp_path / "cv" / "f1_intervals.png").stat().st_size > 10_000
    rows = {r.split(",")[0]: r.split(",") for r in (tmp_path / "cv" / "comparison.csv").open()}
    header = rows["class"]
    variant = header[2].removesuffix(" f1")
    assert variant == "model.classifier.build.dense_units=4" and header[3:7] == [
        f"{variant} low",
        f"{variant} high",
        f"{variant} fold std",  # what make reproduce allows a re-run's pooled F1 to move by
        f"{variant} folds",
    ]
    assert rows["macro F1"][6] == "2"
    recipes = (tmp_path / "cv" / "recipes.csv").read_text().splitlines()
    assert recipes[0].startswith(f"class,{variant} mean,{variant} std,{variant} n,")
    assert recipes[1].startswith("macro F1,") and recipes[1].split(",")[3] == "4"  # 4 folds
    # classes whose thresholds rest on few validation positives are marked, and said why
    assert ("‡: the class's threshold was tuned" in report) == (" ‡ (" in report)
    low, value, high = (float(rows["macro F1"][i]) for i in (3, 2, 4))
    assert low <= value <= high
    # the same macro F1 from the logged out-of-fold predictions, with scikit-learn
    mine = [c for c in children if "dense_units=4 " in c.data.tags["hydra_overrides"] + " "]
    ids, y, decided = [], [], []
    for run in mine:
        logged = np.load(client.download_artifacts(run.info.run_id, "predictions/test.npz"))
        ids += logged["image_ids"].tolist()
        y.append(logged["y_true"])
        decided.append(logged["scores"] >= logged["thresholds"])
    assert sorted(ids) == list(range(48))  # every image held out once
    y, decided = np.concatenate(y), np.concatenate(decided)
    present = np.flatnonzero(y.sum(0) > 0)
    macro = f1_score(y, decided, average="macro", labels=present, zero_division=0)
    assert value == pytest.approx(macro, abs=1e-4)
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert metrics[f"compare/f1_macro/{sanitize(variant)}"] == pytest.approx(macro)
    assert "compare/classes_with_significant_winner" in metrics
    # make reproduce on a repeated cross-validation: its recipe-level numbers
    capfd.readouterr()
    check = ["--check", str(tmp_path / "cv"), "--experiment", "taco", "--no-log"]
    assert compare_main([*check, "--out", str(tmp_path / "checked")]) == 0
    out = capfd.readouterr().out
    assert "identical mode: all " in out and "| macro F1 | model.classifier" in out
    recipe = float(recipes[1].split(",")[1])  # the recipes' numbers, not the pooled ones
    assert f"| macro F1 | {variant} | {recipe:.3f} [" in out
    # a report from before recipes.csv: its pooled first repetition, as it states it
    (tmp_path / "cv" / "recipes.csv").unlink()
    assert compare_main([*check, "--out", str(tmp_path / "checked_old")]) == 0
    assert f"| macro F1 | {variant} | {value:.3f} [" in capfd.readouterr().out


def test_a_model_the_study_does_not_list_takes_its_default(compose_cfg):
    from taco.config import resolved_config
    from taco.errors import ConfigError, user_error

    cfg = compose_cfg(["experiment=compare_models", "model=vgg16_rf"])  # not in its tables
    assert cfg.model.image_size == 64 and cfg.trainer.max_epochs == 8  # the tables' defaults
    cfg = compose_cfg(["experiment=compare_models", "model=vgg16_rf", "~study.image_size.default"])
    with pytest.raises(Exception) as err:
        resolved_config(cfg)
    error = user_error(err.value)
    assert isinstance(error, ConfigError) and str(error) == (
        "study.image_size has no entry for model 'vgg16_rf' and no default: add "
        "study.image_size.vgg16_rf=<value> (or study.image_size.default) to the experiment"
    )


@pytest.mark.parametrize(
    ("option", "module", "target"),
    [("ray", "ray_launcher", "make setup-ray"), ("slurm", "slurm_launcher", "make setup-slurm")],
)
def test_a_launcher_without_its_plugin_says_what_to_install(monkeypatch, option, module, target):
    """Without hydra-ray-launcher (or hydra-submitit-launcher), the class Hydra registers for
    `hydra/launcher=ray` (or `slurm`) is a stand-in, refused before the sweep opens a run."""
    import importlib
    import sys

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from taco.config import CONF_DIR, register_resolvers
    from taco.errors import ConfigError
    from taco.sweeps.plan import check_launcher

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [f"hydra/launcher={option}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    shim = importlib.import_module(f"hydra_plugins.taco_launcher.{module}")
    if not getattr(shim, "MissingLauncher", None):  # the plugin is installed: nothing to say
        check_launcher(cfg.hydra.launcher)
    monkeypatch.setitem(sys.modules, f"taco.sweeps.{module}", None)  # as if not installed
    try:
        importlib.reload(shim)
        with pytest.raises(ConfigError, match=f"hydra/launcher={option} needs .*: run `{target}`"):
            check_launcher(cfg.hydra.launcher)
    finally:
        monkeypatch.undo()
        importlib.reload(shim)


def test_a_sweep_that_ends_on_a_launcher_error_closes_its_parent_failed(
    tmp_path, tiny_overrides, mlflow_uri, command
):
    """Not KILLED, as an interrupted sweep: the launcher could not start (here a setting the
    basic launcher does not take, refused after the parent run opened)."""
    run = _sweep(command, tiny_overrides, tmp_path, "+hydra.launcher.foo=1", "seed=1,2")
    assert run.returncode == 1
    client = mlflow.MlflowClient(mlflow_uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    assert parent.info.status == "FAILED" and parent.data.tags["error"] == "exit code 1"


def test_a_rerun_sweep_takes_finished_jobs_only_from_its_own_folder(
    tmp_path, tiny_overrides, mlflow_uri, command
):
    base = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    base = [*base, f"paths.root_dir={tmp_path}", "trainer.max_epochs=1", "seed=1"]

    def sweep(folder: str, *more: str):
        proc = command("taco-train", "-m", *base, f"hydra.sweep.dir={tmp_path}/{folder}", *more)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    sweep("multirun/a")
    # the same sweep in another folder: the finished job of folder a is not its result
    assert "finished before" not in sweep("multirun/b", "ckpt_path=last")
    assert "finished before, in run" in sweep("multirun/a", "ckpt_path=last")


def test_the_resume_line_of_a_sweep_names_its_folder(monkeypatch, tmp_path):
    import sys

    from taco.cli.train import resume_command
    from taco.sweeps import sweep_dir

    monkeypatch.setattr(sys, "argv", ["taco-train", "-m", "seed=1,2", "ckpt_path=x"])
    monkeypatch.setattr(sweep_dir, "_HELD", {})  # this process's earlier sweeps: not this one
    assert resume_command() == "taco-train -m seed=1,2 ckpt_path=last"  # no sweep started yet
    monkeypatch.setitem(sweep_dir._HELD, tmp_path, None)
    assert resume_command() == f"taco-train -m seed=1,2 hydra.sweep.dir={tmp_path} ckpt_path=last"

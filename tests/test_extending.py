"""The README's "add a model family" recipe, proven: a new module (tests/toy_family.py) and one
config file, run through the real `taco-train` sweep, `taco-compare` and `taco-predict` (their
console scripts, in this process)."""

from pathlib import Path

import mlflow

from taco.models.base import BaseClassifier
from tests.toy_family import PooledLogistic

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
name: pooled_logistic
image_size: 32
classifier:
  _target_: tests.toy_family.PooledLogistic
  grid: 4
"""


def register_loader(site: Path) -> Path:
    """What installing a family's package does for its loader (README, "Extending"): an entry
    point in `taco.model_loaders`, here in a dist-info folder of its own on the path."""
    dist = site / "toy_family-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-family\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[taco.model_loaders]\npooled_logistic = tests.toy_family:PooledLogistic\n"
    )
    return site


def test_a_new_model_family_from_one_module_and_one_config(
    tmp_path, tiny_overrides, tiny_data, mlflow_uri, command, capfd, monkeypatch
):
    from taco.cli.compare import main as compare_main
    from taco.cli.predict import main as predict_main

    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "pooled_logistic.yaml").write_text(CONFIG)
    site = register_loader(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))  # as if installed: its entry point is found
    keep = [o for o in tiny_overrides(tmp_path) if not o.startswith(("model.", "paths.output"))]
    out = command(
        "taco-train",
        "-m",
        f"hydra.searchpath=[file://{tmp_path}/conf]",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "model=pooled_logistic,cnn",
        "model.image_size=32",
        *keep,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    toy = [r for r in runs if r.data.tags.get("model") == "pooled_logistic"]
    assert len(toy) == 1 and toy[0].info.status == "FINISHED"
    assert any(k.startswith("test/f1/") for k in toy[0].data.metrics)
    assert toy[0].data.metrics["epochs_trained"] == 1  # single pass

    capfd.readouterr()
    assert compare_main(["--out", str(tmp_path / "cmp"), "--register", "litter"]) == 0
    out = capfd.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| class"))
    assert "pooled_logistic" in header and "cnn" in header

    # the sweep's best model, registered: version 1 of `litter`, from the best job's run
    registry = mlflow.MlflowClient(mlflow_uri, registry_uri=mlflow_uri)
    (version,) = registry.search_model_versions("name = 'litter'")
    best = max(runs, key=lambda r: r.data.metrics.get("test/f1_macro", -1))
    assert int(version.version) == 1 and version.run_id == best.info.run_id
    assert "registered models:/litter/1" in out

    images = tiny_data / "synthetic" / "batch_1"
    for model in ("models:/litter/1", toy[0].info.run_id):
        assert predict_main(["--model", model, "--cpu-isa", "none", str(images)]) == 0
        assert len(capfd.readouterr().out.strip().splitlines()) == 48

    # why they fail: the registered model on its test split (logged to its run), on a folder,
    # and the sweep's two families side by side on the same images
    explain = tmp_path / "explain"
    run = command(
        "taco-explain",
        "run_id=models:/litter/1",
        f"output={explain}",
        "log=true",
        f"hydra.run.dir={tmp_path}/explain_run",
        *(o for o in keep if not o.startswith("++callbacks")),  # taco-explain has none
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    written = {p.relative_to(explain).as_posix() for p in explain.rglob("*.png")}
    assert {"per_class_curves.png", "missed_instead.png"} <= written
    assert any(p.startswith("galleries/") for p in written)
    assert "| all |" in (explain / "pointing_game.md").read_text()
    logged = {a.path for a in client.list_artifacts(version.run_id, "explain/test")}
    assert "explain/test/per_class_curves.png" in logged and "explain/test/galleries" in logged
    run = command(
        "taco-explain",
        "run_id=models:/litter/1",
        f"images={images}",
        f"output={tmp_path}/photos",
        f"hydra.run.dir={tmp_path}/explain_run",
        *(o for o in keep if not o.startswith("++callbacks")),  # taco-explain has none
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(list((tmp_path / "photos" / "overlays").glob("*.png"))) == 48
    parent = next(r for r in runs if r.data.tags.get("taco.sweep") == "parent")
    run = command(
        "taco-explain",
        f"sweep={parent.info.run_id[:8]}",
        f"output={tmp_path}/sweep",
        f"hydra.run.dir={tmp_path}/explain_run",
        *(o for o in keep if not o.startswith("++callbacks")),  # taco-explain has none
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    compared = list((tmp_path / "sweep" / "compare").glob("*.png"))
    assert compared and all(p.stat().st_size > 5000 for p in compared)
    assert len([p for p in (tmp_path / "sweep").iterdir() if (p / "summary.json").is_file()]) == 2


def test_a_family_lacking_a_required_member_is_named_when_built():
    """`BaseClassifier` gives the optional members; the required ones are named if missing."""
    import pytest

    class Half(BaseClassifier):
        kind = "half"

        def train_epoch(self, batches, epoch, hooks):
            return float("nan")

    with pytest.raises(TypeError) as err:
        Half()
    for member in ("predict_scores", "checkpoint_state", "save", "load_predictor"):
        assert member in str(err.value)
    assert isinstance(PooledLogistic(), BaseClassifier)  # the toy family writes no stubs


def test_a_family_brings_its_own_config_rules():
    """A family's constructor annotations are its rules: checked before anything is built."""
    import pytest

    from taco.errors import ConfigError
    from taco.schema import check_config

    toy = {"_target_": "tests.toy_family.PooledLogistic"}
    check_config({"model": {"classifier": {**toy, "grid": 4}}})
    with pytest.raises(ConfigError) as err:
        check_config({"model": {"classifier": {**toy, "gird": 4}}})
    assert str(err.value).startswith(
        "model.classifier.gird=4 is not allowed: expected one of the keys of "
        "tests.toy_family.PooledLogistic: C, grid"
    )
    with pytest.raises(ConfigError, match="model.classifier.grid='x' is not allowed"):
        check_config({"model": {"classifier": {**toy, "grid": "x"}}})

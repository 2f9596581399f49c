"""`make ui-shots`, end to end: a sweep, MLflow's UI on 127.0.0.1, five pages in Chromium."""

from pathlib import Path

import pytest

from tools.ui_shots import CHROMIUM, SHOTS, mlflow_ui, run_sweep, shoot, sweep_runs

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium: make chromium")
def test_the_ui_pages_hold_the_sweep(tmp_path):
    pytest.importorskip("playwright", reason="make setup-ui")
    uri = run_sweep(tmp_path / "work")
    _, parent, children = sweep_runs(uri)
    with mlflow_ui(uri) as base:
        texts = shoot(base, uri, tmp_path / "docs")
    assert all((tmp_path / "docs" / name).stat().st_size > 10_000 for name in SHOTS)
    names = [c.info.run_name for c in children]
    assert sorted(names) == [f"{m}-synthetic-seed={s}" for m in ("cnn", "vgg16") for s in (1, 2)]
    runs_page = texts["ui_experiment.png"]
    assert parent.info.run_name in runs_page and all(n in runs_page for n in names)
    assert "Model training" in runs_page and "Training runs" not in runs_page  # not the GenAI view
    parent_page = texts["ui_parent_run.png"]
    assert all(f"compare/f1_macro/{m}" in parent_page for m in ("cnn", "vgg16"))
    compare_page = texts["ui_compare.png"]
    assert "Comparing 4 Runs" in compare_page and all(n in compare_page for n in names)
    assert "test/f1_macro" in compare_page and "model.name" in compare_page
    table_page = texts["ui_table.png"]
    assert all(f"{m} mean" in table_page for m in ("cnn", "vgg16"))
    assert "macro F1" in table_page or "support" in table_page
    assert "galleries" in texts["ui_gallery.png"]

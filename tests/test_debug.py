"""Lightning-style debug modes and early stopping."""

import mlflow

from taco.config import build
from taco.training.job import train, trainer_node


def test_fast_dev_run_logs_nothing(compose_cfg, tmp_path, tiny_overrides, mlflow_uri):
    cfg = compose_cfg([*tiny_overrides(tmp_path), "debug=fdr"])
    assert cfg.trainer.fast_dev_run and cfg.logger._target_.endswith("NullLogger")
    assert 0.0 <= train(cfg) <= 1.0
    assert mlflow.MlflowClient(mlflow_uri).get_experiment_by_name("taco") is None


def test_fast_dev_run_uses_one_batch_per_stage(compose_cfg, tmp_path, tiny_overrides):
    cfg = compose_cfg([*tiny_overrides(tmp_path), "debug=fdr"])
    dm, trainer = build(cfg.dataset), build(trainer_node(cfg.trainer))
    dm.prepare_data()
    dm.setup()
    assert trainer.max_epochs == 1
    assert all(len(trainer.batches(dm, part)) == 1 for part in ("train", "val", "test"))


def test_overfit_reaches_near_perfect_training_f1(compose_cfg, tmp_path, tiny_overrides):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith(("model.cl", "trainer"))]
    extra = [
        "model.classifier.build.filters=[16,32]",
        "model.classifier.build.dense_units=64",
        "model.classifier.learning_rate=0.01",
        "trainer.max_epochs=100",  # 2 steps an epoch on this tiny set
    ]
    cfg = compose_cfg([*overrides, "debug=overfit", *extra])
    assert train(cfg) >= 0.85  # val == the overfitted training batches, threshold 0.5


def test_early_stopping_stops_when_nothing_improves(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    cfg = compose_cfg(
        [
            *tiny_overrides(tmp_path),
            "trainer.max_epochs=6",
            "callbacks.early_stopping.patience=2",
            "model.classifier.learning_rate=1e-12",  # nothing can improve after epoch 1
            "callbacks.early_stopping.min_delta=0.001",
            "model.classifier.build.batch_norm=false",
        ]
    )
    train(cfg)
    client = mlflow.MlflowClient(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("taco").experiment_id])[0]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/f1_macro")]
    assert steps == [1, 2, 3]

"""Error analysis on fabricated scores, maps and boxes (answers known in advance), then on the
tiny data set's real boxes."""

from pathlib import Path

import numpy as np
import pytest

from taco.analysis.errors import class_errors, missed_instead
from taco.analysis.pointing import (
    covered_share,
    hit_share,
    overall,
    pointing_game,
    pointing_table,
)
from taco.analysis.saliency import Occlusion, peak
from taco.data.images import boxes_in_frame
from taco.metrics import evaluate

NAMES = ["Bottle", "Can", "Lid"]


def test_the_gallery_shows_the_most_confident_errors_first():
    y_true = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    scores = np.array(
        [
            [0.90, 0.1, 0.1],  # Bottle found
            [0.70, 0.2, 0.1],  # Bottle false positive, second most confident
            [0.95, 0.8, 0.1],  # Bottle false positive, the most confident
            [0.10, 0.1, 0.1],  # Bottle missed, the lowest score
            [0.40, 0.6, 0.1],  # below Bottle's threshold: not an error; Can false positive
            [0.30, 0.9, 0.1],  # Bottle missed; Can found
        ]
    )
    result = evaluate(y_true, scores, np.array([0.5, 0.5, 0.5]), NAMES)
    by_name = {e.name: e for e in class_errors(result, per_class=6)}
    assert set(by_name) == {"Bottle", "Can"}  # Lid has no test positives
    bottle = by_name["Bottle"]
    assert bottle.false_positives.tolist() == [2, 1]
    assert bottle.false_negatives.tolist() == [3, 5]
    assert bottle.positives == 3 and bottle.threshold == 0.5
    assert by_name["Can"].false_positives.tolist() == [4] and not len(
        by_name["Can"].false_negatives
    )
    assert class_errors(result, per_class=1)[0].false_positives.tolist() == [2]

    counts = missed_instead(result)
    assert counts.shape == (3, 4)
    # Bottle missed on rows 3 (nothing absent predicted) and 5 (Can is true there: not instead)
    assert counts[0].tolist() == [0, 0, 0, 2]
    assert counts[1].sum() == 0  # Can never missed


def test_the_pointing_game_counts_peaks_inside_the_class_boxes():
    size = 10
    y_true = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0]])
    boxes = [
        np.array(
            [[0, 0, 0, 4, 4], [1, 5, 5, 9, 9]], np.float32
        ),  # Bottle top-left, Can bottom-right
        np.array([[0, 3, 3, 7, 7]], np.float32),  # Bottle in the middle
        np.zeros((0, 5), np.float32),  # Can without a box: not a pair
    ]
    maps = np.zeros((3, 3, size, size))
    maps[0, 0, 1, 1] = 1  # Bottle's peak (x=1.5, y=1.5): in its box
    maps[0, 1, 1, 1] = 1  # Can's peak at the same place: outside Can's box
    maps[1, 0, 9, 0] = 1  # Bottle's peak at (0.5, 9.5): outside
    assert peak(maps[0, 0]) == (1.5, 1.5) and peak(maps[1, 0]) == (0.5, 9.5)

    def saliency(image, column):
        return maps[image, column]

    scores = {s.name: s for s in pointing_game(saliency, y_true, boxes, NAMES, size)}
    bottle, can = scores["Bottle"], scores["Can"]
    assert (bottle.pairs, bottle.hits, bottle.centre_hits) == (2, 1, 1)  # centre (5, 5) in box 2
    assert (can.pairs, can.hits, can.centre_hits) == (1, 0, 1)  # (5, 5) is on Can's box edge
    assert bottle.random_hits == pytest.approx(0.16 + 0.16)  # 4x4 pixel centres of 10x10, twice
    pooled = overall(scores.values())
    assert pooled.pairs == 3 and pooled.rates[0] == pytest.approx(1 / 3)
    assert "| all | 3 | 0.333 | 0.667 |" in pointing_table(list(scores.values()))
    assert covered_share(np.array([[0, 0, 10, 10]]), 10) == 1.0
    # a tie on the peak scores the share of the tied pixels in a box: a flat map scores as a
    # random point does, not as the centre (which a "nearest the middle" rule would give it)
    box = np.array([[3, 3, 7, 7]])
    assert hit_share(np.zeros((size, size)), box) == pytest.approx(covered_share(box, size))
    plateau = np.zeros((size, size))
    plateau[0:2, 2:4] = 1  # four tied pixels, two of them (x 2.5 and 3.5, y 1.5) ...
    assert hit_share(plateau, np.array([[0, 1, 10, 10]])) == pytest.approx(0.5)  # ... at y >= 1


def test_occlusion_finds_what_the_score_depends_on():
    """A 'model' whose class 1 score is the brightness of one corner: its map peaks there, for
    any family that can score images."""

    def predict(images):
        images = np.asarray(images, np.float32) / 255
        corner = images[:, 24:32, 24:32].mean((1, 2, 3))
        return np.stack([images.mean((1, 2, 3)), corner], axis=1)

    images = np.full((3, 32, 32, 3), 250, np.uint8)
    occlusion = Occlusion(32, patch=8, stride=4)
    assert occlusion.squares[-1] == (24, 24)  # the last square flush with the edge
    found = list(occlusion.drops(predict, images, images_per_call=2))
    assert [i for i, _, _ in found] == [0, 1, 2]
    index, scores, drops = found[1]
    assert scores == pytest.approx([250 / 255, 250 / 255])
    maps = occlusion.render(drops)
    x, y = peak(maps[1])
    assert 24 <= x <= 32 and 24 <= y <= 32
    assert maps[1][:16, :16].max() == 0  # hiding elsewhere does not change the corner's score


def test_boxes_follow_the_resize():
    box = np.array([[2, 10, 20, 40, 20]])  # class 2, x 10, y 20, 40 wide, 20 high
    squash = boxes_in_frame(box, 200, 100, 50, "squash")[0]
    assert squash.tolist() == pytest.approx([2, 2.5, 10, 12.5, 20])
    letterbox = boxes_in_frame(box, 200, 100, 50, "letterbox")[0]  # 50 x 25 picture, 12 px down
    assert letterbox.tolist() == pytest.approx([2, 2.5, 17, 12.5, 22])


def test_every_figure_is_drawn(tmp_path):
    from taco.analysis.figures import error_gallery, missed_instead_heatmap, per_class_curves

    rng = np.random.default_rng(0)
    y_true = (rng.random((30, 3)) < 0.4).astype(np.uint8)
    y_true[0] = [1, 1, 1]
    scores = np.clip(y_true * 0.4 + rng.random((30, 3)) * 0.6, 0, 1)
    result = evaluate(y_true, scores, np.array([0.5, 0.6, 0.4]), NAMES)
    images = rng.integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
    boxes = [np.array([[0, 2, 2, 8, 8]], np.float32)] * 30
    errors = class_errors(result, per_class=3)
    overlays = {int(r): rng.random((16, 16)) for r in errors[0].false_negatives}
    per_class_curves(result).savefig(tmp_path / "curves.png")
    counts = missed_instead(result)
    missed_instead_heatmap(counts, NAMES).savefig(tmp_path / "missed.png")
    sheet = error_gallery(errors[0], images, result, overlays, boxes)
    sheet.save(tmp_path / "gallery.png")
    for name in ("curves", "missed", "gallery"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
    # two rows of thumbnails as wide as the most errors of a kind, 16 px drawn at 8x
    columns = max(len(errors[0].false_positives), len(errors[0].false_negatives))
    assert sheet.width >= columns * 128 and sheet.height >= 2 * 128


def test_the_data_boxes_lie_on_the_labelled_classes(tiny_data: Path, compose_cfg):
    """The synthetic data's boxes, in model-input pixels, belong to the image's true classes."""
    from taco.config import build
    from tests import tiny

    cfg = compose_cfg(tiny.overrides(tiny_data, tiny_data / "unused"))
    dm = build(cfg.dataset)
    dm.setup()
    labels, boxes, images = dm.labels("test"), dm.boxes("test"), dm.images("test")
    assert len(boxes) == len(labels) == len(images) and images.shape[1] == dm.image_size
    pairs = 0
    for row, found in zip(labels, boxes, strict=True):
        assert set(found[:, 0].astype(int)) <= set(np.flatnonzero(row))
        assert (found[:, 1:] >= -0.01).all() and (found[:, 1:] <= dm.image_size + 0.01).all()
        pairs += len(set(found[:, 0].astype(int)))
    assert pairs >= len(labels)  # every labelled object has its box


@pytest.mark.backend
def test_gradient_saliency_runs_on_this_backend(compose_cfg, tmp_path, tiny_overrides, mlflow_uri):
    """`method=gradient`: the input gradients of a Keras family (TensorFlow's tape or
    `jax.grad`), the same pointing game and galleries."""
    import mlflow

    from taco.training.job import train

    tiny = tiny_overrides(tmp_path, analysis=True)
    train(compose_cfg([*tiny, "callbacks.where_it_looks.method=gradient"]))
    client = mlflow.MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["test/pointing/pairs"] >= 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "analysis")}
    assert {"analysis/pointing_game.md", "analysis/galleries"} <= artifacts


def test_a_forest_asked_for_gradients_is_refused_before_a_run(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    import mlflow

    from taco.errors import ConfigError
    from taco.training.job import build_job

    overrides = [
        *(o for o in tiny_overrides(tmp_path, analysis=True) if not o.startswith("model.")),
        "model=vgg16_rf",
        "model.weights=null",
        "callbacks.where_it_looks.method=gradient",
    ]
    with pytest.raises(ConfigError, match="gradient needs a family with gradients.*use method="):
        build_job(compose_cfg(overrides))
    client = mlflow.MlflowClient(mlflow_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_explain_without_a_model_is_one_line(tmp_path, mlflow_uri, command):
    out = command("taco-explain", f"hydra.run.dir={tmp_path}/run")
    assert out.returncode == 2  # a usage error, as every taco-* command answers one
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [
        "taco-explain: error: give exactly one of run_id=<run or model>, "
        "model_dir=<model folder> or sweep=<parent run id>"
    ], out.stderr

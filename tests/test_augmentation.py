import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from taco.data.pipeline import CachedBatches
from taco.plots import augmentation_preview


@pytest.mark.parametrize("group", ["light", "heavy"])
def test_groups_build_strict_pipelines_that_keep_shape(compose_cfg, group):
    cfg = compose_cfg([f"augmentation={group}", "model.image_size=40"])
    augment = instantiate(cfg.augmentation)
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    out = augment(image=image)["image"]
    assert out.shape == image.shape and out.dtype == np.uint8
    fig = augmentation_preview([image, image], augment, copies=2)
    assert len(fig.axes) == 6


def test_none_group_is_empty(compose_cfg):
    assert not compose_cfg(["augmentation=none"]).augmentation


def test_misspelt_argument_is_an_error(compose_cfg):
    cfg = compose_cfg(["augmentation=light", "+augmentation.transforms.2.brightnes_limit=0.3"])
    with pytest.raises(InstantiationException, match="brightnes_limit"):
        instantiate(cfg.augmentation)


def test_only_training_batches_are_augmented():
    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.eye(4)

    def paint(image):
        return {"image": np.full_like(image, 255)}

    train = CachedBatches(images, labels, np.arange(4), 2, shuffle=True, augment=paint)
    plain = CachedBatches(images, labels, np.arange(4), 2)
    assert train[0][0].min() == 255 and plain[0][0].max() == 0

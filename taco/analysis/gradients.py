"""Where a Keras model looks, by its gradients: the input gradient of a class's score (its
magnitude over the colour channels, smoothed over a few pixels), on TensorFlow (a gradient tape)
and on JAX (`jax.grad`). A forest has no gradients: occlusion (`taco.analysis.saliency`) serves
every family; this is the faster, finer check where the backend gives gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from taco.errors import ConfigError


def float_input(model: Any) -> Any:
    """The same model (the same layers and weights) taking float images: the saved models take
    uint8, through which no gradient flows."""
    import keras

    shape = tuple(model.inputs[0].shape[1:])
    return keras.models.clone_model(
        model,
        input_tensors=keras.Input(shape, dtype="float32", name="float_image"),
        clone_function=lambda layer: layer,
    )


def input_gradients(model: Any, images: np.ndarray, column: int) -> np.ndarray:
    """(n, size, size): |d score[column] / d pixel|, summed over the colour channels."""
    import keras

    x = np.asarray(images, np.float32)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            total = tf.reduce_sum(model(tensor, training=False)[:, column])
        grads = tape.gradient(total, tensor).numpy()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(v: Any) -> Any:
            return jnp.sum(model(v, training=False)[:, column])

        grads = np.asarray(jax.grad(total)(jnp.asarray(x)))
    else:
        raise ConfigError(
            f"no gradients on the {backend} backend here: use callbacks.where_it_looks."
            "method=occlusion"
        )
    return np.abs(grads).sum(-1)


def smoothed(maps: np.ndarray, width: int) -> np.ndarray:
    """Each (size, size) map averaged over width x width pixels (a gradient is speckled: its
    peak should be where the evidence is dense, not one pixel)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(np.asarray(maps, np.float32), size=(1, width, width), mode="nearest")


class GradientSaliency:
    """Input-gradient maps of chosen (image, class) pairs, computed in one backward pass per
    class (others on request); read as the occlusion `Saliency` of `taco.analysis.write`."""

    def __init__(self, model: Any, images: np.ndarray, pairs: dict[int, set[int]]) -> None:
        self.images = np.asarray(images)
        self.size = self.images.shape[1]
        self.width = max(3, self.size // 16)
        self.kept: dict[tuple[int, int], np.ndarray] = {}
        rows_of: dict[int, list[int]] = {}
        for row, columns in pairs.items():
            for column in columns:
                rows_of.setdefault(column, []).append(row)
        self.model = float_input(model)
        for column, rows in rows_of.items():
            rows = sorted(rows)
            maps = smoothed(input_gradients(self.model, self.images[rows], column), self.width)
            for row, found in zip(rows, maps, strict=True):
                self.kept[(row, column)] = found

    def map(self, row: int, column: int) -> np.ndarray:
        """One pair's map (computed now if it was not chosen)."""
        if (row, column) not in self.kept:
            found = input_gradients(self.model, self.images[row : row + 1], column)
            self.kept[(row, column)] = smoothed(found, self.width)[0]
        return self.kept[(row, column)]

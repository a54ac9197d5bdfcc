"""A stem whose filters come from the data, not from training: airbench's patch whitening.

The 2x2 patches of the (normalised) training images are decorrelated by their covariance's
eigenvectors, each scaled to unit variance; the layer keeps each whitening filter and its
negative, so a following GELU passes both signs. Starting from whitened inputs is most of why
airbench-style nets reach high accuracy in few epochs. The kernel is a non-trainable weight
(saved with the model and its checkpoints); the bias trains as usual.

`fit_to_data(model, images)` fits every whitening layer of a model; the engine calls it once,
before the first epoch of a fresh run (a resumed run reads the fitted kernel from its checkpoint).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

WHITENING_SAMPLE = 5000  # training images that estimate the patch covariance (as airbench)
FIT_BATCH = 500


@keras.saving.register_keras_serializable(package="cifar_ops")
class PatchWhitening(layers.Layer):
    """Valid `patch_size` x `patch_size` conv with 2 x patch_size^2 x channels fitted filters."""

    def __init__(self, patch_size: int = 2, epsilon: float = 5e-4, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.epsilon = epsilon

    def build(self, input_shape):
        dims = self.patch_size * self.patch_size * int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.patch_size, self.patch_size, int(input_shape[-1]), 2 * dims),
            initializer="he_uniform",  # a usable random projection until fitted
            trainable=False,
        )
        self.bias = self.add_weight(name="bias", shape=(2 * dims,), initializer="zeros")

    def call(self, inputs):
        return ops.conv(inputs, self.kernel, padding="valid") + self.bias

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        shrink = self.patch_size - 1
        return (
            batch,
            None if height is None else height - shrink,
            None if width is None else width - shrink,
            2 * self.patch_size * self.patch_size * input_shape[-1],
        )

    def fit(self, inputs: np.ndarray) -> None:
        """Set the kernel from `inputs` (N, H, W, C) as this layer receives them."""
        covariance = patch_covariance(inputs, self.patch_size)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        # Columns of eigenvectors / sqrt(eigenvalue): each filter's response has unit variance.
        filters = eigenvectors / np.sqrt(np.clip(eigenvalues, 0.0, None) + self.epsilon)
        filters = filters[:, ::-1]  # strongest direction first, as airbench orders them
        kernel = np.concatenate([filters, -filters], axis=1)
        self.kernel.assign(kernel.reshape(self.kernel.shape).astype("float32"))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "epsilon": self.epsilon}


def patch_covariance(inputs: np.ndarray, patch_size: int) -> np.ndarray:
    """Covariance (D, D) of every patch_size x patch_size patch, D = patch_size^2 x channels.

    Patch vectors are flattened (row, column, channel), the order of a conv kernel's first three
    axes, so an eigenvector reshapes straight into a filter. Accumulated in float64, in chunks.
    """
    windows = np.lib.stride_tricks.sliding_window_view
    dims = patch_size * patch_size * inputs.shape[-1]
    total = np.zeros(dims)
    outer = np.zeros((dims, dims))
    count = 0
    for start in range(0, len(inputs), FIT_BATCH):
        chunk = np.asarray(inputs[start : start + FIT_BATCH], dtype=np.float64)
        # (n, H', W', C, p, p) -> (n, H', W', p, p, C) -> rows of (row, column, channel)
        patches = windows(chunk, (patch_size, patch_size), axis=(1, 2))
        patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, dims)
        total += patches.sum(axis=0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    return outer / count - np.outer(mean, mean)


def fit_to_data(model: keras.Model, images: np.ndarray) -> int:
    """Fit each `PatchWhitening` layer of `model` to what it sees of `images`; how many it fitted.

    The layer's inputs come from the model's own layers in front of it (e.g. normalisation), run
    on `WHITENING_SAMPLE` images drawn with a fixed seed from the whole array: a split may be
    ordered by class, and its first images would describe one or two classes only.
    """
    whitening = [layer for layer in model.layers if isinstance(layer, PatchWhitening)]
    if not whitening:
        return 0
    size = min(WHITENING_SAMPLE, len(images))
    chosen = np.sort(np.random.default_rng(0).choice(len(images), size=size, replace=False))
    sample = images[chosen].astype("float32")
    for layer in whitening:
        feed = keras.Model(model.inputs, layer.input)
        inputs = feed.predict(sample, batch_size=FIT_BATCH, verbose=0)
        layer.fit(np.asarray(inputs, dtype=np.float64))
    return len(whitening)

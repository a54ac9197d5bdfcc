"""Augmentation from `AugmentationConfig` as Keras preprocessing layers, applied to whole batches.

Keras's own layers do flip, rotation, translation and zoom per image. Its `RandomCrop` draws one
offset per batch, so the pad-and-crop (airbench / ResNet paper style) and cutout are two small
layers here that draw per image. Every layer is seeded from the run seed.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.splits import derive_seed
from cifar_ops.errors import ConfigError


class RandomPadCrop(keras.layers.Layer):
    """Reflect-pad each image by `padding` pixels, then crop it back at a random offset."""

    def __init__(self, padding: int, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = padding
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training or not self.padding:
            return images
        pad = self.padding
        height, width = images.shape[1], images.shape[2]
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        batch = tf.shape(images)[0]
        offsets = keras.random.randint((batch, 2), 0, 2 * pad + 1, seed=self.generator)
        rows = offsets[:, :1] + tf.range(height)[None, :]
        cols = offsets[:, 1:] + tf.range(width)[None, :]
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, cols, axis=2, batch_dims=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}


class Cutout(keras.layers.Layer):
    """Zero one `size` x `size` square per image, centred anywhere (DeVries & Taylor, 2017)."""

    def __init__(self, size: int, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = size
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: tf.Tensor, training: bool = True) -> tf.Tensor:
        if not training or not self.size:
            return images
        height, width = images.shape[1], images.shape[2]
        batch = tf.shape(images)[0]
        centre_y = keras.random.randint((batch, 1, 1), 0, height, seed=self.generator)
        centre_x = keras.random.randint((batch, 1, 1), 0, width, seed=self.generator)
        top, left = centre_y - self.size // 2, centre_x - self.size // 2
        ys = tf.range(height)[None, :, None]
        xs = tf.range(width)[None, None, :]
        inside = (ys >= top) & (ys < top + self.size) & (xs >= left) & (xs < left + self.size)
        return images * tf.cast(~inside, images.dtype)[..., None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "seed": self.seed}


def augmentation_layers(
    augmentation: AugmentationConfig, image_size: int, seed: int
) -> list[keras.layers.Layer]:
    """The configured layers in a fixed order (geometry first, cutout last); empty if none."""
    aug = augmentation

    def layer_seed(name: str) -> int:
        return derive_seed(seed, f"augment-{name}") % (2**31)

    layers: list[keras.layers.Layer] = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed("flip")))
    if aug.rotation:
        # Keras takes a fraction of a full turn; the config says degrees.
        layers.append(
            keras.layers.RandomRotation(
                aug.rotation / 360.0, fill_mode="reflect", seed=layer_seed("rotation")
            )
        )
    if aug.width_shift or aug.height_shift:
        layers.append(
            keras.layers.RandomTranslation(
                aug.height_shift, aug.width_shift, fill_mode="reflect", seed=layer_seed("shift")
            )
        )
    if aug.zoom:
        layers.append(
            keras.layers.RandomZoom(aug.zoom, fill_mode="reflect", seed=layer_seed("zoom"))
        )
    if aug.crop_padding:
        if aug.crop_padding >= image_size:
            raise ConfigError(
                f"got {aug.crop_padding}: reflect padding must be below the image size "
                f"({image_size} pixels)",
                key="augmentation.crop_padding",
            )
        layers.append(RandomPadCrop(aug.crop_padding, seed=layer_seed("crop")))
    if aug.cutout:
        if aug.cutout > image_size:
            raise ConfigError(
                f"got {aug.cutout}: the cutout square must fit the image ({image_size} pixels)",
                key="augmentation.cutout",
            )
        layers.append(Cutout(aug.cutout, seed=layer_seed("cutout")))
    return layers

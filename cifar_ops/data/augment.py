"""Augmentation from `AugmentationConfig`, applied to whole batches from a per-batch seed.

Flip, rotation, shifts and zoom compose into one affine matrix per image and one bilinear
resampling pass (`affine.py`), skipped when rotation, shifts and zoom are all 0 (a flip alone is
then a mirror). Pad-and-crop (airbench / ResNet paper style) and cutout follow, both per image.
Every draw is a stateless random op of the batch's seed, so a run's augmentation is reproducible
from its seed (Keras's preprocessing layers, which this replaces, were not).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.affine import affine_transforms, apply_transforms
from cifar_ops.data.draws import (  # noqa: F401 (check_augmentation, is_active: importers')
    ANGLE,
    CROP_COL,
    CROP_ROW,
    CUT_X,
    CUT_Y,
    DRAWS,
    FLIP,
    SHIFT_X,
    SHIFT_Y,
    ZOOM,
    check_augmentation,
    has_geometry,
    is_active,
)


def first_flips(count: int, seed: int) -> np.ndarray:
    """Each image's flip in the first epoch of an alternating flip: half of them, by `seed`."""
    return np.random.default_rng(seed).random(count) < 0.5


def alternating_flips(first: tf.Tensor, index: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """The flips of images `index` in 0-based `epoch`: their first-epoch flip, toggled on odd
    epochs, so every image is seen mirrored and not mirrored in turn (airbench)."""
    odd = tf.math.floormod(tf.cast(epoch, tf.int64), 2) == 1
    return tf.math.logical_xor(tf.gather(first, index), odd)


def augment_batch(
    images: tf.Tensor,
    seed: tf.Tensor,
    augmentation: AugmentationConfig,
    flips: tf.Tensor | None = None,
) -> tf.Tensor:
    """A float batch (B, H, W, C) in [0, 255], augmented per image from `seed` (shape (2,)).

    `flips` (bool, (B,)) gives each image's flip instead of drawing it (an alternating flip).
    """
    aug = augmentation
    height, width = int(images.shape[1]), int(images.shape[2])
    draws = tf.random.stateless_uniform((tf.shape(images)[0], DRAWS), seed=seed)

    def symmetric(column: int, limit: float) -> tf.Tensor:
        return (2.0 * draws[:, column] - 1.0) * limit

    if flips is None:
        flips = draws[:, FLIP] < 0.5 if aug.flip else tf.zeros_like(draws[:, FLIP], tf.bool)
    if has_geometry(aug):
        transforms = affine_transforms(
            angle=symmetric(ANGLE, math.radians(aug.rotation)),
            zoom=1.0 + symmetric(ZOOM, aug.zoom),
            shift_x=symmetric(SHIFT_X, aug.width_shift * width),
            shift_y=symmetric(SHIFT_Y, aug.height_shift * height),
            flip=flips,
            height=height,
            width=width,
        )
        images = apply_transforms(images, transforms)
    elif aug.flip:
        images = tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if aug.crop_padding:
        images = pad_crop(images, draws[:, CROP_ROW], draws[:, CROP_COL], aug.crop_padding)
    if aug.cutout:
        images = cutout(images, draws[:, CUT_Y], draws[:, CUT_X], aug.cutout)
    return images


def pad_crop(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, padding: int) -> tf.Tensor:
    """Reflect-pad each image by `padding`; crop it back at offsets from uniforms in [0, 1)."""
    height, width = int(images.shape[1]), int(images.shape[2])
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], "REFLECT")
    choices = 2 * padding + 1
    top = tf.minimum(tf.cast(rows * choices, tf.int32), choices - 1)
    left = tf.minimum(tf.cast(cols * choices, tf.int32), choices - 1)
    row_index = top[:, None] + tf.range(height)[None, :]
    col_index = left[:, None] + tf.range(width)[None, :]
    cropped = tf.gather(padded, row_index, axis=1, batch_dims=1)
    return tf.gather(cropped, col_index, axis=2, batch_dims=1)


def cutout(images: tf.Tensor, ys: tf.Tensor, xs: tf.Tensor, size: int) -> tf.Tensor:
    """Zero one `size` x `size` square per image, centred anywhere (DeVries & Taylor, 2017)."""
    height, width = int(images.shape[1]), int(images.shape[2])
    centre_y = tf.minimum(tf.cast(ys * height, tf.int32), height - 1)[:, None, None]
    centre_x = tf.minimum(tf.cast(xs * width, tf.int32), width - 1)[:, None, None]
    top, left = centre_y - size // 2, centre_x - size // 2
    row = tf.range(height)[None, :, None]
    col = tf.range(width)[None, None, :]
    inside = (row >= top) & (row < top + size) & (col >= left) & (col < left + size)
    return images * tf.cast(~inside, images.dtype)[..., None]

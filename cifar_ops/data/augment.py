"""Augmentation from `AugmentationConfig`, applied to whole batches from a per-batch seed.

Flip, rotation, shifts and zoom compose into one affine matrix per image and one bilinear
resampling pass (`affine.py`), skipped when rotation, shifts and zoom are all 0 (a flip alone is
then a mirror). Pad-and-crop (airbench / ResNet paper style) and cutout follow, both per image.
Every draw is a stateless random op of the batch's seed, so a run's augmentation is reproducible
from its seed (Keras's preprocessing layers, which this replaces, were not).
"""

from __future__ import annotations

import math

import tensorflow as tf

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.affine import affine_transforms, apply_transforms
from cifar_ops.errors import ConfigError

# Columns of the per-image uniform draws: each transform has its own, so turning one on or off
# leaves the others' draws unchanged.
FLIP, ANGLE, ZOOM, SHIFT_X, SHIFT_Y, CROP_ROW, CROP_COL, CUT_Y, CUT_X = range(9)
DRAWS = 9


def check_augmentation(augmentation: AugmentationConfig, image_size: int) -> None:
    """Reject crop padding or cutout sizes that do not fit the images; raises `ConfigError`."""
    if augmentation.crop_padding >= image_size:
        raise ConfigError(
            f"got {augmentation.crop_padding}: reflect padding must be below the image size "
            f"({image_size} pixels)",
            key="augmentation.crop_padding",
        )
    if augmentation.cutout > image_size:
        raise ConfigError(
            f"got {augmentation.cutout}: the cutout square must fit the image "
            f"({image_size} pixels)",
            key="augmentation.cutout",
        )


def has_geometry(augmentation: AugmentationConfig) -> bool:
    """Whether the affine pass runs at all (rotation, a shift or zoom configured)."""
    aug = augmentation
    return bool(aug.rotation or aug.width_shift or aug.height_shift or aug.zoom)


def is_active(augmentation: AugmentationConfig | None) -> bool:
    """Whether any augmentation is configured."""
    if augmentation is None:
        return False
    aug = augmentation
    return bool(aug.flip or has_geometry(aug) or aug.crop_padding or aug.cutout)


def augment_batch(
    images: tf.Tensor, seed: tf.Tensor, augmentation: AugmentationConfig
) -> tf.Tensor:
    """A float batch (B, H, W, C) in [0, 255], augmented per image from `seed` (shape (2,))."""
    aug = augmentation
    height, width = int(images.shape[1]), int(images.shape[2])
    draws = tf.random.stateless_uniform((tf.shape(images)[0], DRAWS), seed=seed)

    def symmetric(column: int, limit: float) -> tf.Tensor:
        return (2.0 * draws[:, column] - 1.0) * limit

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

"""Augmentation of a whole batch with `keras.ops`, so it runs inside the compiled training step.

The same transforms as the host path (`augment.py`) with the same per-image draw columns: flip,
the fused affine pass (rotation, shifts, zoom and the flip in one bilinear resampling, reflecting
at the border), reflect pad-and-crop, cutout. Draws come from a stateless generator keyed by
(seed, step), so a step's augmentation depends only on the run seed and the global step number:
a run repeats, and a resumed run continues the same stream. Works on the TensorFlow and JAX
backends. The caller may instead say which images to mirror (airbench's alternating flip).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.draws import (
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
    has_geometry,
)


def stateless_uniform(shape: tuple[Any, ...], seed: Any) -> Any:
    """Uniforms in [0, 1) that depend only on `seed`, an int32 pair tensor (backend's own op)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed=ops.cast(seed, "int32"))
    if backend == "jax":
        import jax

        key = jax.random.wrap_key_data(ops.cast(seed, "uint32"))
        return jax.random.uniform(key, shape, dtype="float32")
    raise NotImplementedError(f"no stateless generator for the {backend!r} backend")


def affine_transforms(
    angle: Any, zoom: Any, shift_x: Any, shift_y: Any, flip: Any, height: int, width: int
) -> Any:
    """(batch, 8) projective rows from per-image parameters; the matrices of `affine.py`."""
    cos, sin = ops.cos(angle), ops.sin(angle)
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    a0, a1 = zoom * cos, -zoom * sin
    b0, b1 = zoom * sin, zoom * cos
    a2 = centre_x - a0 * centre_x - a1 * centre_y - (cos * shift_x - sin * shift_y)
    b2 = centre_y - b0 * centre_x - b1 * centre_y - (sin * shift_x + cos * shift_y)
    sign = ops.where(flip, -1.0, 1.0)
    a0, a1 = sign * a0, sign * a1
    a2 = ops.where(flip, (width - 1) - a2, a2)
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment(images: Any, seed: Any, augmentation: AugmentationConfig, flips: Any = None) -> Any:
    """A float batch (B, H, W, C) in [0, 255], augmented per image from `seed` (int32 pair).

    `flips` (B,) bool, when given, says which images are mirrored (the alternating flip) instead
    of the random draw that `augmentation.flip` asks for.
    """
    aug = augmentation
    height, width = int(images.shape[1]), int(images.shape[2])
    batch = ops.shape(images)[0]
    draws = stateless_uniform((batch, DRAWS), seed)

    def symmetric(column: int, limit: float) -> Any:
        return (2.0 * draws[:, column] - 1.0) * limit

    mirror = flips is not None or aug.flip
    if flips is None:
        flips = draws[:, FLIP] < 0.5 if aug.flip else ops.zeros((batch,), "bool")
    if has_geometry(aug):
        transforms = affine_transforms(
            symmetric(ANGLE, math.radians(aug.rotation)),
            1.0 + symmetric(ZOOM, aug.zoom),
            symmetric(SHIFT_X, aug.width_shift * width),
            symmetric(SHIFT_Y, aug.height_shift * height),
            flips,
            height,
            width,
        )
        images = ops.image.affine_transform(
            images, transforms, interpolation="bilinear", fill_mode="reflect", fill_value=0.0
        )
    elif mirror:
        images = ops.where(flips[:, None, None, None], ops.flip(images, axis=2), images)
    if aug.crop_padding:
        images = pad_crop(images, draws[:, CROP_ROW], draws[:, CROP_COL], aug.crop_padding)
    if aug.cutout:
        images = cutout(images, draws[:, CUT_Y], draws[:, CUT_X], aug.cutout)
    return images


def pad_crop(images: Any, rows: Any, cols: Any, padding: int) -> Any:
    """Reflect-pad each image by `padding`; crop it back at offsets from uniforms in [0, 1)."""
    height, width, channels = (int(d) for d in images.shape[1:])
    pad = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    padded = ops.pad(images, pad, mode="reflect")
    padded_width = width + 2 * padding
    choices = 2 * padding + 1
    top = ops.minimum(ops.cast(rows * choices, "int32"), choices - 1)
    left = ops.minimum(ops.cast(cols * choices, "int32"), choices - 1)
    row = top[:, None, None] + ops.arange(height, dtype="int32")[None, :, None]
    col = left[:, None, None] + ops.arange(width, dtype="int32")[None, None, :]
    flat_index = ops.reshape(row * padded_width + col, (-1, height * width, 1))
    flat = ops.reshape(padded, (-1, (height + 2 * padding) * padded_width, channels))
    index = ops.broadcast_to(flat_index, (ops.shape(flat)[0], height * width, channels))
    cropped = ops.take_along_axis(flat, index, axis=1)
    return ops.reshape(cropped, (-1, height, width, channels))


def cutout(images: Any, ys: Any, xs: Any, size: int) -> Any:
    """Zero one `size` x `size` square per image, centred anywhere (DeVries & Taylor, 2017)."""
    height, width = int(images.shape[1]), int(images.shape[2])
    centre_y = ops.minimum(ops.cast(ys * height, "int32"), height - 1)[:, None, None]
    centre_x = ops.minimum(ops.cast(xs * width, "int32"), width - 1)[:, None, None]
    top, left = centre_y - size // 2, centre_x - size // 2
    row = ops.arange(height, dtype="int32")[None, :, None]
    col = ops.arange(width, dtype="int32")[None, None, :]
    inside = (row >= top) & (row < top + size) & (col >= left) & (col < left + size)
    return images * ops.cast(ops.logical_not(inside), images.dtype)[..., None]

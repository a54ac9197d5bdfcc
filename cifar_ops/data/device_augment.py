"""Augmentation of a whole batch with `keras.ops`, so it runs inside the compiled training step.

The same transforms as the host path (`augment.py`) with the same per-image draw columns: flip,
the fused affine pass (rotation, shifts, zoom and the flip in one bilinear resampling, reflecting
at the border), reflect pad-and-crop, cutout. Draws come from a stateless generator keyed by
(seed, step), so a step's augmentation depends only on the run seed and the global step number:
a run repeats, and a resumed run continues the same stream. Works on the TensorFlow and JAX
backends. The caller may instead say which images to mirror (airbench's alternating flip).
`gather_augmented` reads a batch from the uint8 split and augments it; on TensorFlow, without the
affine pass, flip and pad-and-crop only move pixels, so they become the index of a second gather.
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
    flips = mirrored(draws, aug, flips)
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


def gather_augmented(
    images: Any, index: Any, seed: Any, augmentation: AugmentationConfig, flips: Any = None
) -> Any:
    """`augment` of the float batch at `index` of the uint8 split `images` (N, H, W, C), read
    the quicker way for the backend (`folds_into_gather`)."""
    if folds_into_gather(augmentation):
        return gather_folded(images, index, seed, augmentation, flips)
    pixels = ops.cast(ops.take(images, index, axis=0), "float32")
    return augment(pixels, seed, augmentation, flips)


def gather_folded(
    images: Any, index: Any, seed: Any, augmentation: AugmentationConfig, flips: Any = None
) -> Any:
    """`augment`'s pixels for an augmentation without the affine pass: the batch is gathered,
    then its pixels are read once more in their augmented places, each output pixel's source
    row and column (reflected at the edges, mirrored for a flipped image) standing in for the
    mirrored copy, the padded copy and the crop. Cutout follows."""
    aug = augmentation
    height, width, channels = (int(d) for d in images.shape[1:])
    if has_geometry(aug):
        raise ValueError("rotation, shifts and zoom resample every pixel: use `augment`")
    if aug.crop_padding >= min(height, width):  # `reflected` reaches one image size out
        raise ValueError(f"crop padding {aug.crop_padding} must be below the image size")
    pixels = ops.take(images, index, axis=0)
    batch = ops.shape(index)[0]
    draws = stateless_uniform((batch, DRAWS), seed)
    rows = ops.arange(height, dtype="int32")[None, :]
    cols = ops.arange(width, dtype="int32")[None, :]
    if aug.crop_padding:
        padding = aug.crop_padding  # offsets into the padded image, less the padding
        top = crop_offsets(draws[:, CROP_ROW], padding) - padding
        left = crop_offsets(draws[:, CROP_COL], padding) - padding
        rows = reflected(rows + top[:, None], height)
        cols = reflected(cols + left[:, None], width)
    if flips is not None or aug.flip:
        cols = ops.where(mirrored(draws, aug, flips)[:, None], (width - 1) - cols, cols)
    # batch x height x width passes 2^31 at 8,192 images of 512 px: int64 on TensorFlow, where
    # training folds (JAX has int64 only in its x64 mode)
    flat = "int64" if keras.backend.backend() == "tensorflow" else "int32"
    position = ops.arange(batch, dtype=flat)[:, None, None]
    rows, cols = ops.cast(rows, flat), ops.cast(cols, flat)
    source = (position * height + rows[:, :, None]) * width + cols[:, None, :]
    pixels = ops.take(ops.reshape(pixels, (-1, channels)), ops.reshape(source, (-1,)), axis=0)
    pixels = ops.cast(ops.reshape(pixels, (-1, height, width, channels)), "float32")
    if aug.cutout:
        pixels = cutout(pixels, draws[:, CUT_Y], draws[:, CUT_X], aug.cutout)
    return pixels


def folds_into_gather(augmentation: AugmentationConfig) -> bool:
    """Whether flip and crop are read through the gather's index: on TensorFlow, measured
    (bench/device_augment.py, 128-batch, 2-core CPU) 0.7 against 3.4-4.1 ms op by op and 0.68
    against 0.82 ms under XLA. Not under JAX, whose XLA fuses the padded crop (0.30-0.32 against
    0.17-0.21 ms), nor with rotation, shifts or zoom, whose affine pass resamples every pixel."""
    return keras.backend.backend() == "tensorflow" and not has_geometry(augmentation)


def mirrored(draws: Any, augmentation: AugmentationConfig, flips: Any = None) -> Any:
    """(B,) bool: the images to mirror: `flips` when given, else the flip draw's, else none."""
    if flips is not None:
        return flips
    if augmentation.flip:
        return draws[:, FLIP] < 0.5
    return ops.zeros((ops.shape(draws)[0],), "bool")


def crop_offsets(uniforms: Any, padding: int) -> Any:
    """(B,) int32 crop offsets in [0, 2 x padding] of the padded image, from uniforms in [0, 1)."""
    choices = 2 * padding + 1
    return ops.minimum(ops.cast(uniforms * choices, "int32"), choices - 1)


def reflected(position: Any, size: int) -> Any:
    """A position up to `size - 1` outside [0, size) mirrored at the edge pixel, as a reflect
    padding places it (-1 reads 1, size reads size - 2)."""
    return (size - 1) - ops.abs((size - 1) - ops.abs(position))


def pad_crop(images: Any, rows: Any, cols: Any, padding: int) -> Any:
    """Reflect-pad each image by `padding`; crop it back at offsets from uniforms in [0, 1)."""
    height, width, channels = (int(d) for d in images.shape[1:])
    pad = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    padded = ops.pad(images, pad, mode="reflect")
    padded_width = width + 2 * padding
    top, left = crop_offsets(rows, padding), crop_offsets(cols, padding)
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

"""One affine resampling pass per image: flip, rotation, zoom and shift composed into one matrix.

Three Keras layers (rotation, translation, zoom) cost three bilinear resampling passes over every
image; composing the transforms first costs one. The matrices follow
`ImageProjectiveTransformV3`: each row `[a0, a1, a2, b0, b1, b2, 0, 0]` maps an output pixel
`(x, y)` to the input point `(a0 x + a1 y + a2, b0 x + b1 y + b2)` it samples.
"""

from __future__ import annotations

import tensorflow as tf


def affine_transforms(
    *,
    angle: tf.Tensor,
    zoom: tf.Tensor,
    shift_x: tf.Tensor,
    shift_y: tf.Tensor,
    flip: tf.Tensor,
    height: int,
    width: int,
) -> tf.Tensor:
    """(batch, 8) float32 transforms from per-image parameters, each of shape (batch,).

    `angle` in radians about the image centre; `zoom` scales the sampled area (above 1 zooms
    out); `shift_x`/`shift_y` in pixels move the content right/down; `flip` (bool) mirrors it
    left-right. Same order as the Keras layers it replaces: flip, rotate, shift, zoom.
    """
    angle, zoom = tf.cast(angle, tf.float32), tf.cast(zoom, tf.float32)
    shift_x, shift_y = tf.cast(shift_x, tf.float32), tf.cast(shift_y, tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    # input = centre + R (zoom * (output - centre) - shift), R the rotation
    a0, a1 = zoom * cos, -zoom * sin
    b0, b1 = zoom * sin, zoom * cos
    a2 = centre_x - a0 * centre_x - a1 * centre_y - (cos * shift_x - sin * shift_y)
    b2 = centre_y - b0 * centre_x - b1 * centre_y - (sin * shift_x + cos * shift_y)
    # a left-right flip applied first reads the input at width - 1 - x
    sign = tf.where(tf.cast(flip, tf.bool), -1.0, 1.0)
    a0, a1 = sign * a0, sign * a1
    a2 = tf.where(tf.cast(flip, tf.bool), (width - 1) - a2, a2)
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def apply_transforms(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Resample a float batch once: bilinear, reflecting at the border as the Keras layers did."""
    resampled = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    resampled.set_shape(images.shape)  # the op forgets the static shape the later steps need
    return resampled

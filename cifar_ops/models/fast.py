"""Airbench-style fast net (after Keller Jordan's airbench): a 2x2 conv stem, then per width a
group of conv -> max pool -> BN -> GELU -> conv -> BN -> GELU, a global max pool and a linear head
whose logits are scaled down. BatchNorm keeps no scale (only a shift) and moves fast."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import FastModel
from cifar_ops.models.layers import image_input
from cifar_ops.models.registry import register

# CIFAR-10 channel statistics on [0, 255] pixels: the stem sees unit-scale inputs.
CIFAR10_MEAN = (125.31, 122.95, 113.87)
CIFAR10_STD = (62.99, 62.09, 66.70)
LOGIT_SCALE = 1.0 / 9  # airbench's output scaling: keeps early softmax outputs soft


@register("fast")
def build_fast(cfg: FastModel, *, input_shape: tuple[int, int, int], num_classes: int):
    inputs = image_input(input_shape)
    x = layers.Normalization(
        mean=list(CIFAR10_MEAN), variance=[s * s for s in CIFAR10_STD], name="normalize"
    )(inputs)
    x = layers.Conv2D(cfg.stem_filters, 2, padding="valid", name="stem_conv")(x)
    x = layers.Activation("gelu", name="stem_gelu")(x)
    for i, width in enumerate(cfg.widths, start=1):
        x = conv_group(x, width, cfg.batch_norm_momentum, f"group{i}")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    x = layers.Rescaling(LOGIT_SCALE, name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fast")


def conv_group(x: keras.KerasTensor, filters: int, momentum: float, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = _bn_gelu(x, momentum, f"{name}_1")
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    return _bn_gelu(x, momentum, f"{name}_2")


def _bn_gelu(x: keras.KerasTensor, momentum: float, name: str) -> keras.KerasTensor:
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5, scale=False, name=f"{name}_bn")(
        x
    )
    return layers.Activation("gelu", name=f"{name}_gelu")(x)

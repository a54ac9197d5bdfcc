"""Seed 001: conv layers each with BatchNorm + ReLU, pooled and dropped out after every pair."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import Conv4BnModel
from cifar_ops.models.layers import conv_bn, dense_head, image_input, rescale
from cifar_ops.models.registry import register


@register("conv4_bn")
def build_conv4_bn(
    cfg: Conv4BnModel, *, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    inputs = image_input(input_shape)
    x = rescale(inputs)
    for i, filters in enumerate(cfg.filters, start=1):
        x = conv_bn(x, filters, f"conv{i}")
        if i % 2 == 0 or i == len(cfg.filters):
            x = _pool_and_drop(x, cfg.dropout, f"stage{(i + 1) // 2}")
    x = layers.Flatten(name="flatten")(x)
    outputs = dense_head(x, [cfg.dense_units], cfg.dropout, num_classes)
    return keras.Model(inputs, outputs, name="conv4_bn")


def _pool_and_drop(x: keras.KerasTensor, dropout: float, name: str) -> keras.KerasTensor:
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x

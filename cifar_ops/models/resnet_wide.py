"""Seed 002: a conv + residual block per width (64-128-256-512), max pooling between stages,
average pooling at the end, and a dense head with dropout."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import ResNetWideModel
from cifar_ops.models.layers import conv_bn, dense_head, image_input, rescale, residual_block
from cifar_ops.models.registry import register


@register("resnet_wide")
def build_resnet_wide(
    cfg: ResNetWideModel, *, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    inputs = image_input(input_shape)
    x = rescale(inputs)
    last = len(cfg.filters)
    for i, filters in enumerate(cfg.filters, start=1):
        x = conv_bn(x, filters, f"stage{i}_in")
        x = residual_block(x, filters, 1, f"stage{i}_res")
        if i < last:
            x = layers.MaxPooling2D(name=f"stage{i}_maxpool")(x)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = dense_head(x, cfg.dense_units, cfg.dropout, num_classes, batch_norm=True)
    return keras.Model(inputs, outputs, name="resnet_wide")

"""Seed 000: conv blocks of (Conv-BN-ReLU x2, MaxPool, Dropout), then a BatchNorm'd Dense head."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import CustomCnnModel
from cifar_ops.models.layers import conv_bn, dense_head, image_input, rescale
from cifar_ops.models.registry import register


@register("custom_cnn")
def build_custom_cnn(
    cfg: CustomCnnModel, *, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    inputs = image_input(input_shape)
    x = rescale(inputs)
    for i, filters in enumerate(cfg.filters, start=1):
        x = conv_block(x, filters, cfg.dropout, f"block{i}")
    x = layers.Flatten(name="flatten")(x)
    outputs = dense_head(x, [cfg.dense_units], cfg.dropout, num_classes, batch_norm=True)
    return keras.Model(inputs, outputs, name="custom_cnn")


def conv_block(x: keras.KerasTensor, filters: int, dropout: float, name: str) -> keras.KerasTensor:
    x = conv_bn(x, filters, f"{name}_a")
    x = conv_bn(x, filters, f"{name}_b")
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x

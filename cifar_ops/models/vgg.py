"""Seed 004's VGG-10: 3 x (Conv-Conv-MaxPool) then Dense (~403K parameters at 32/64/96, 128)."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import Vgg10Model
from cifar_ops.models.layers import conv_bn, conv_relu, dense_head, image_input, rescale
from cifar_ops.models.registry import register


@register("vgg10")
def build_vgg10(cfg: Vgg10Model, *, input_shape: tuple[int, int, int], num_classes: int):
    inputs = image_input(input_shape)
    x = rescale(inputs)
    for i, filters in enumerate(cfg.filters, start=1):
        x = vgg_block(x, filters, cfg.batch_norm, f"block{i}")
        if cfg.dropout:
            x = layers.Dropout(cfg.dropout, name=f"block{i}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = dense_head(x, [cfg.dense_units], cfg.dropout, num_classes)
    return keras.Model(inputs, outputs, name="vgg10")


def vgg_block(x: keras.KerasTensor, filters: int, batch_norm: bool, name: str) -> keras.KerasTensor:
    for part in ("a", "b"):
        if batch_norm:
            x = conv_bn(x, filters, f"{name}_{part}")
        else:
            x = conv_relu(x, filters, f"{name}_{part}")
    return layers.MaxPooling2D(name=f"{name}_pool")(x)

"""Seeds 003/004's baseline: (Conv-Pool) per filter count, then Dense (~316K parameters)."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import SimpleCnnModel
from cifar_ops.models.layers import conv_relu, dense_head, image_input, rescale
from cifar_ops.models.registry import register


@register("simple_cnn")
def build_simple_cnn(
    cfg: SimpleCnnModel, *, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    inputs = image_input(input_shape)
    x = rescale(inputs)
    for i, filters in enumerate(cfg.filters, start=1):
        x = conv_relu(x, filters, f"block{i}", padding="valid")
        x = layers.MaxPooling2D(name=f"block{i}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = dense_head(x, [cfg.dense_units], cfg.dropout, num_classes)
    return keras.Model(inputs, outputs, name="simple_cnn")

"""Blocks shared by the model families; every layer is named after the block it belongs to."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers


def image_input(input_shape: Sequence[int]) -> keras.KerasTensor:
    return keras.Input(shape=tuple(input_shape), name="image")


def rescale(x: keras.KerasTensor) -> keras.KerasTensor:
    """Raw pixels in [0, 255] to [0, 1] inside the graph, so saved models need no preprocessing."""
    return layers.Rescaling(1.0 / 255, name="rescale")(x)


def conv_bn(
    x: keras.KerasTensor,
    filters: int,
    name: str,
    *,
    kernel_size: int = 3,
    strides: int = 1,
    activation: str | None = "relu",
    weight_decay: float = 0.0,
) -> keras.KerasTensor:
    """Conv (no bias: BatchNorm has one) -> BatchNorm -> optional activation."""
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def conv_relu(x: keras.KerasTensor, filters: int, name: str, *, padding: str = "same"):
    return layers.Conv2D(filters, 3, padding=padding, activation="relu", name=f"{name}_conv")(x)


def dense_head(
    x: keras.KerasTensor,
    units: Sequence[int],
    dropout: float,
    num_classes: int,
    *,
    batch_norm: bool = False,
) -> keras.KerasTensor:
    """Hidden Dense layers (ReLU, optional BatchNorm, dropout) then the softmax classifier."""
    for i, width in enumerate(units, start=1):
        x = layers.Dense(width, name=f"head_dense{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"head_bn{i}")(x)
        x = layers.Activation("relu", name=f"head_relu{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    return classifier(x, num_classes)


def classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Softmax output in float32 (stays stable under mixed precision)."""
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def residual_block(
    x: keras.KerasTensor, filters: int, stride: int, name: str, *, weight_decay: float = 0.0
) -> keras.KerasTensor:
    """He et al. basic block: two 3x3 conv-BN, a 1x1 conv-BN projection when the shape changes."""
    y = conv_bn(x, filters, f"{name}_a", strides=stride, weight_decay=weight_decay)
    y = conv_bn(y, filters, f"{name}_b", activation=None, weight_decay=weight_decay)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(
            x,
            filters,
            f"{name}_proj",
            kernel_size=1,
            strides=stride,
            activation=None,
            weight_decay=weight_decay,
        )
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)

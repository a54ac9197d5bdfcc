"""Airbench-style fast net (after Keller Jordan's airbench): a 2x2 conv stem (learned, or fitted
to the data as patch whitening: models/whitening.py), then per width a group of conv -> max pool
-> BN -> GELU -> conv -> BN -> GELU (convs optionally identity-initialised: `dirac_init`), a
global max pool and a linear head whose logits are scaled down. BatchNorm keeps no scale (only a
shift) and moves fast."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from cifar_ops.config import FastModel
from cifar_ops.models.layers import image_input
from cifar_ops.models.registry import register
from cifar_ops.models.whitening import PatchWhitening

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
    x = stem(x, cfg)
    x = layers.Activation("gelu", name="stem_gelu")(x)
    for i, width in enumerate(cfg.widths, start=1):
        x = conv_group(x, width, cfg, f"group{i}")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    x = layers.Dense(
        num_classes, use_bias=False, kernel_initializer=random_init(cfg.init), name="head"
    )(x)
    x = layers.Rescaling(LOGIT_SCALE, name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fast")


def stem(x: keras.KerasTensor, cfg: FastModel) -> keras.KerasTensor:
    """2x2 valid conv: learned, or whitening fitted to the data (`whiten`) before training."""
    if cfg.whiten:  # the config holds stem_filters at the whitened count
        return PatchWhitening(patch_size=2, name="stem_whiten")(x)
    return layers.Conv2D(cfg.stem_filters, 2, padding="valid", name="stem_conv")(x)


def conv_group(x: keras.KerasTensor, filters: int, cfg: FastModel, name: str):
    init = PartialIdentity(cfg.init) if cfg.dirac_init else random_init(cfg.init)
    momentum, epsilon = cfg.batch_norm_momentum, cfg.batch_norm_epsilon
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer=init, name=f"{name}_conv1"
    )(x)
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = _bn_gelu(x, momentum, epsilon, f"{name}_1")
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer=init, name=f"{name}_conv2"
    )(x)
    return _bn_gelu(x, momentum, epsilon, f"{name}_2")


def random_init(name: str) -> keras.initializers.Initializer:
    """`glorot`: Keras's default; `torch`: PyTorch's conv/linear default, U(+-1/sqrt(fan_in))."""
    if name == "torch":
        return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")
    return keras.initializers.GlorotUniform()


@keras.saving.register_keras_serializable(package="cifar_ops")
class PartialIdentity(keras.initializers.Initializer):
    """Random conv kernel (`random_init(init)`) whose first min(in, out) filters are the
    identity (dirac)."""

    def __init__(self, init: str = "glorot"):
        self.init = init

    def __call__(self, shape, dtype=None):
        height, width, channels_in, channels_out = shape
        kernel = random_init(self.init)(shape, dtype=dtype)
        count = min(channels_in, channels_out)
        identity = np.zeros((height, width, channels_in, count), dtype="float32")
        identity[height // 2, width // 2, np.arange(count), np.arange(count)] = 1.0
        identity = keras.ops.convert_to_tensor(identity, dtype=kernel.dtype)
        return keras.ops.concatenate([identity, kernel[..., count:]], axis=-1)

    def get_config(self):
        return {"init": self.init}


def _bn_gelu(x: keras.KerasTensor, momentum: float, epsilon: float, name: str):
    x = layers.BatchNormalization(
        momentum=momentum, epsilon=epsilon, scale=False, name=f"{name}_bn"
    )(x)
    return layers.Activation("gelu", name=f"{name}_gelu")(x)

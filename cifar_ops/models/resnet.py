"""He et al. 2016 CIFAR ResNet (depth 6n+2: 3 stages x n basic blocks); ResNet-20 is ~0.27M."""

from __future__ import annotations

import keras
from keras import layers

from cifar_ops.config import ResNet20Model
from cifar_ops.errors import ModelError
from cifar_ops.models.layers import classifier, conv_bn, image_input, rescale, residual_block
from cifar_ops.models.registry import register


@register("resnet20")
def build_resnet(
    cfg: ResNet20Model, *, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    if (cfg.depth - 2) % 6:
        raise ModelError(f"model.depth: must be 6n+2 (20, 32, 44, ...), got {cfg.depth}")
    blocks_per_stage = (cfg.depth - 2) // 6
    inputs = image_input(input_shape)
    x = rescale(inputs)
    x = conv_bn(x, cfg.base_filters, "stem")
    for stage in range(3):
        filters = cfg.base_filters * 2**stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = residual_block(x, filters, stride, f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=f"resnet{cfg.depth}")

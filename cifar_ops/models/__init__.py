"""Model families, registered by `model.name`: `build_model(cfg)` gives an uncompiled Keras model
that takes raw pixels in [0, 255]; `set_trainable_tail` opens a transfer base for fine-tuning."""

from cifar_ops.models import (  # noqa: F401  (importing a family registers its builder)
    conv4,
    custom_cnn,
    fast,
    resnet,
    resnet_wide,
    simple,
    transfer,
    vgg,
)
from cifar_ops.models.registry import build_model, registered_names
from cifar_ops.models.transfer import load_weights_file, set_trainable_tail

__all__ = ["build_model", "load_weights_file", "registered_names", "set_trainable_tail"]

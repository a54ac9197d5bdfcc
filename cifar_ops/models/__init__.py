"""Model families, registered by `model.name`: `build_model(cfg)` gives an uncompiled Keras model
that takes raw pixels in [0, 255]; `fit_to_data` fits the layers set from the training images
(whitening) before a fresh run; `set_trainable_tail` opens a transfer base for fine-tuning."""

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
from cifar_ops.models.whitening import fit_to_data

__all__ = [
    "build_model",
    "fit_to_data",
    "load_weights_file",
    "registered_names",
    "set_trainable_tail",
]

"""The optimizers a config names, and the one Keras lacks: SGD with a faster BatchNorm shift.

Airbench trains BatchNorm shifts (`beta`) at 64x the rate of the other weights: with scale-free
BatchNorm the shift is the only per-channel knob, and a small rate leaves it lagging. For
(momentum) SGD a larger rate on one variable is the same as a larger gradient, so the optimizer
scales those gradients before the usual update (after any loss-scale unscaling).
"""

from __future__ import annotations

from typing import Any

import keras

from cifar_ops.config import OptimizerConfig

SHIFT_SUFFIX = "/beta"  # path of a BatchNormalization layer's shift variable


def build_optimizer(config: OptimizerConfig, learning_rate: Any) -> keras.optimizers.Optimizer:
    """SGD (momentum, nesterov, BatchNorm-shift rate scale), Adam, or AdamW (decoupled decay)."""
    if config.name == "sgd":
        return ShiftScaledSGD(
            learning_rate,
            momentum=config.momentum,
            nesterov=config.nesterov,
            batch_norm_lr_scale=config.batch_norm_lr_scale,
        )
    if config.name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate)


def l2_coefficient(config: OptimizerConfig) -> float:
    """The L2 penalty the model's kernels carry: `weight_decay` for SGD and Adam, 0 for AdamW,
    which decays the weights itself (decoupled)."""
    return 0.0 if config.name == "adamw" else config.weight_decay


def shift_l2_coefficients(config: OptimizerConfig) -> tuple[float, float] | None:
    """(biases, BatchNorm shifts) L2 coefficients under `decay_shifts`, else None. A shift
    learns `batch_norm_lr_scale` times faster, so its coefficient is divided by that scale: each
    step then shrinks it by the same fraction as a kernel (airbench's per-step decay)."""
    if not config.decay_shifts:
        return None
    l2 = l2_coefficient(config)
    return l2, l2 / config.batch_norm_lr_scale


@keras.saving.register_keras_serializable(package="cifar_ops")
class ShiftScaledSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` whose BatchNorm shifts learn `batch_norm_lr_scale` times faster."""

    def __init__(self, *args: Any, batch_norm_lr_scale: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.batch_norm_lr_scale = batch_norm_lr_scale

    def apply(self, grads, trainable_variables=None):
        if self.batch_norm_lr_scale != 1.0:
            variables = trainable_variables or self._trainable_variables
            grads = [
                g * self.batch_norm_lr_scale
                if g is not None and v.path.endswith(SHIFT_SUFFIX)
                else g
                for g, v in zip(grads, variables, strict=True)
            ]
        return super().apply(grads, trainable_variables)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "batch_norm_lr_scale": self.batch_norm_lr_scale}

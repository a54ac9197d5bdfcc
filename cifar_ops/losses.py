"""Sparse categorical cross-entropy with label smoothing.

Keras' `SparseCategoricalCrossentropy` has no `label_smoothing`; the data pipeline yields integer
labels, so this loss one-hots them inside the graph and smooths there. Registered, so a saved
`.keras` model that carries its compile config loads again.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cifar_ops")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against probabilities, labels smoothed by `smoothing`."""

    def __init__(self, smoothing: float = 0.0, name: str = "sparse_smoothed_crossentropy", **kw):
        super().__init__(name=name, **kw)
        self.smoothing = float(smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        classes = ops.shape(y_pred)[-1]
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        one_hot = ops.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, label_smoothing=self.smoothing
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smoothing": self.smoothing}

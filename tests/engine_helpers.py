"""Tiny configs, a small nested-base model and a simulated preemption shared by the engine tests."""

from __future__ import annotations

import copy
from typing import Any

from cifar_ops.config import RunConfig

TINY: dict[str, Any] = {
    "experiment": "engine-test",
    "seed": 7,
    "data": {"source": "synthetic", "synthetic_images": 480, "num_classes": 4, "image_size": 16},
    "model": {"name": "simple_cnn", "filters": [8, 16], "dense_units": 16},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "train": {"epochs": 3, "batch_size": 32},
}


def tiny_config(**sections: dict[str, Any] | Any) -> RunConfig:
    """TINY with sections merged in (dicts) or replaced (a model with a `name`, other values)."""
    raw = copy.deepcopy(TINY)
    for key, value in sections.items():
        if key == "model" and "name" in value:
            raw[key] = value
        elif isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return RunConfig.model_validate(raw)


def nested_base_model(
    model_cfg: Any, *, input_shape: tuple[int, int, int], num_classes: int
) -> Any:
    """A small stand-in for a transfer model: a frozen conv stack named `base` under a head."""
    import keras

    base = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
        ],
        name="base",
    )
    base.trainable = False
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = base(x, training=False)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="nested_base")


def preemption_after(epoch: int) -> Any:
    """A callback that stops `fit` with KeyboardInterrupt after `epoch` (1-based) has ended, as a
    pod stopped right after that epoch's checkpoint was written."""
    import keras

    class Preemption(keras.callbacks.Callback):
        def on_epoch_end(self, index: int, logs: dict | None = None) -> None:
            if index + 1 == epoch:
                raise KeyboardInterrupt("simulated preemption")

    return Preemption()

"""Model builders registered by family name, so configs pick an architecture by `model.name`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import keras

from cifar_ops.errors import ModelError

Builder = Callable[..., keras.Model]
B = TypeVar("B", bound=Builder)

_BUILDERS: dict[str, Builder] = {}


def register(*names: str) -> Callable[[B], B]:
    """Register a builder `(model_cfg, *, input_shape, num_classes) -> keras.Model` under names."""

    def decorate(builder: B) -> B:
        for name in names:
            if name in _BUILDERS:
                raise ValueError(f"model family {name!r} is registered twice")
            _BUILDERS[name] = builder
        return builder

    return decorate


def registered_names() -> list[str]:
    return sorted(_BUILDERS)


def build_model(
    model_cfg: Any,
    *,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
) -> keras.Model:
    """Build the uncompiled model of `model_cfg.name`; it takes raw pixels in [0, 255]."""
    name = getattr(model_cfg, "name", None)
    builder = _BUILDERS.get(str(name))
    if builder is None:
        known = ", ".join(registered_names())
        raise ModelError(f"model.name: unknown model family {name!r}; known families: {known}")
    if num_classes < 2:
        raise ModelError(f"num_classes must be at least 2, got {num_classes}")
    return builder(model_cfg, input_shape=tuple(input_shape), num_classes=num_classes)

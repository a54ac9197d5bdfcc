"""Transfer learning: a Keras application as a frozen base named `base` under a new head.

Inputs are raw pixels in [0, 255]; the graph resizes them to `input_size` and applies the
application's own preprocessing, so a saved model needs nothing outside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from cifar_ops.config import TransferModel
from cifar_ops.errors import ModelError
from cifar_ops.models.layers import dense_head, image_input
from cifar_ops.models.registry import register

BASE = "base"


def _mobilenetv2(weights: str | None, size: int) -> keras.Model:
    return keras.applications.MobileNetV2(
        include_top=False, weights=weights, input_shape=(size, size, 3)
    )


def _efficientnetv2b0(weights: str | None, size: int) -> keras.Model:
    return keras.applications.EfficientNetV2B0(
        include_top=False,
        weights=weights,
        input_shape=(size, size, 3),
        include_preprocessing=True,  # takes [0, 255] itself
    )


def _to_minus_one_one(x: keras.KerasTensor) -> keras.KerasTensor:
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)


# family -> (application factory, preprocessing from [0, 255] to what it expects)
_APPLICATIONS: dict[str, tuple[Callable[[str | None, int], keras.Model], Callable | None]] = {
    "mobilenetv2": (_mobilenetv2, _to_minus_one_one),
    "efficientnetv2b0": (_efficientnetv2b0, None),
}


@register(*_APPLICATIONS)
def build_transfer(
    cfg: TransferModel, *, input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    factory, preprocess = _APPLICATIONS[cfg.name]
    base = _make_base(cfg, factory)
    base.trainable = False
    inputs = image_input(input_shape)
    x = inputs
    if tuple(input_shape[:2]) != (cfg.input_size, cfg.input_size):
        x = layers.Resizing(cfg.input_size, cfg.input_size, name="resize")(x)
    if preprocess is not None:
        x = preprocess(x)
    x = base(x, training=False)  # BatchNorm stays in inference mode, also when fine-tuning
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    units = [cfg.dense_units] if cfg.dense_units else []
    outputs = dense_head(x, units, cfg.dropout, num_classes)
    model = keras.Model(inputs, outputs, name=cfg.name)
    if cfg.weights not in ("imagenet", "none"):
        load_weights_file(model, Path(cfg.weights))
    return model


def _make_base(cfg: TransferModel, factory: Callable[[str | None, int], keras.Model]):
    """The application under the name `base` (some applications key their layout on `name`)."""
    application = _application(cfg, factory)
    return keras.Model(application.input, application.output, name=BASE)


def _application(cfg: TransferModel, factory: Callable[[str | None, int], keras.Model]):
    if cfg.weights != "imagenet":
        return factory(None, cfg.input_size)
    try:
        return factory("imagenet", cfg.input_size)
    except Exception as exc:  # network, certificate or cache failures alike
        raise ModelError(
            f"model.weights: could not get the ImageNet weights of {cfg.name} "
            f"({type(exc).__name__}: {exc}); without internet access use `weights: none` or "
            "`weights: <path to a .weights.h5 or .keras file>`"
        ) from exc


def load_weights_file(model: keras.Model, path: Path) -> None:
    """Load a whole-model or base-only weights file (.weights.h5, legacy .h5, or .keras)."""
    if not path.is_file():
        raise ModelError(
            f"model.weights: {path} is not a file; allowed: imagenet, none, or a path to a "
            ".weights.h5 / .h5 / .keras file"
        )
    base = model.get_layer(BASE)
    if path.suffix == ".keras":
        _copy_from_saved_model(model, base, path)
        return
    errors = []
    for target in (model, base):
        # Keras warns for every part of the file that does not fit before it raises; those are
        # expected while trying the other target, and a load that skipped parts is no fit either.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                target.load_weights(str(path))
            except Exception as exc:  # shape or layout mismatch: try the next target
                errors.append(f"{target.name}: {exc}")
                continue
        skipped = [w for w in caught if "Skipping" in str(w.message)]
        if not skipped:
            return
        errors.append(f"{target.name}: {len(skipped)} parts of the file did not match")
    raise ModelError(
        f"model.weights: {path} fits neither the whole {model.name} model nor its base "
        f"({'; '.join(errors)})"
    )


def _copy_from_saved_model(model: keras.Model, base: keras.Model, path: Path) -> None:
    try:
        saved = keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ModelError(f"model.weights: cannot load {path}: {exc}") from exc
    names = {layer.name for layer in saved.layers}
    source, target = (saved.get_layer(BASE), base) if BASE in names else (saved, model)
    try:
        target.set_weights(source.get_weights())
    except ValueError as exc:
        raise ModelError(f"model.weights: {path} does not fit {model.name}: {exc}") from exc


def set_trainable_tail(model: keras.Model, n: int) -> None:
    """Unfreeze the base's last `n` layers for fine-tuning; BatchNormalization stays frozen.

    Recompile the model afterwards so the optimizer sees the new trainable weights.
    """
    try:
        base = model.get_layer(BASE)
    except ValueError:
        raise ModelError(f"model {model.name!r} has no layer named {BASE!r} to fine-tune") from None
    if n < 0:
        raise ModelError(f"unfreeze_layers must be 0 or more, got {n}")
    base.trainable = True
    cut = max(len(base.layers) - n, 0)
    for index, layer in enumerate(base.layers):
        frozen = index < cut or isinstance(layer, layers.BatchNormalization)
        layer.trainable = not frozen

"""Patch-whitening stem: the covariance and kernel layout, whitened outputs, a frozen kernel that
survives saving, and the engine fitting it once per run (not again on resume)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_ops import training
from cifar_ops.config import FastModel
from cifar_ops.errors import ConfigError
from cifar_ops.models import build_model, fit_to_data
from cifar_ops.models.whitening import PatchWhitening, patch_covariance
from cifar_ops.runner import execute
from tests.engine_helpers import tiny_config
from tests.memory_sink import MemorySink


def correlated_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 images whose neighbouring pixels and channels are strongly correlated (as photos)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n, size // 2, size // 2, 1)) + 0.3 * rng.normal(
        size=(n, size // 2, size // 2, 3)
    )
    smooth = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)
    noisy = 128 + 50 * smooth + 8 * rng.normal(size=(n, size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def explicit_patches(x: np.ndarray) -> np.ndarray:
    """Every 2x2 patch as a row, flattened (row, column, channel) by plain loops."""
    n, h, w, _ = x.shape
    return np.array(
        [
            x[k, i : i + 2, j : j + 2, :].reshape(-1)
            for k in range(n)
            for i in range(h - 1)
            for j in range(w - 1)
        ]
    )


def test_patch_covariance_is_the_covariance_of_patches_in_kernel_order() -> None:
    x = np.random.default_rng(0).normal(size=(3, 5, 6, 3))
    expected = np.cov(explicit_patches(x).T, bias=True)
    np.testing.assert_allclose(patch_covariance(x, 2), expected, atol=1e-12)


def test_fitted_layer_is_a_conv_with_whitening_filters_and_their_negatives() -> None:
    x = correlated_images(40, size=8).astype("float64")
    layer = PatchWhitening(name="w")
    layer.build(x.shape)
    layer.fit(x)
    kernel = layer.kernel.numpy().reshape(12, 24)
    np.testing.assert_allclose(kernel[:, 12:], -kernel[:, :12])
    out = np.asarray(layer(x.astype("float32")))
    # the layer's output is each patch dotted with each filter (the kernel layout is right)
    patches = explicit_patches(x)
    np.testing.assert_allclose(out.reshape(-1, 24), patches @ kernel, rtol=1e-4, atol=1e-3)
    # and the first half of the outputs is white: unit variances, no correlation
    covariance = np.cov((patches @ kernel[:, :12]).T, bias=True)
    np.testing.assert_allclose(covariance, np.eye(12), atol=2e-2)


def test_fast_net_stem_is_fitted_frozen_and_saved(tmp_path: Path) -> None:
    cfg = FastModel(name="fast", widths=[8, 8, 8], whiten=True)
    model = build_model(cfg, input_shape=(16, 16, 3), num_classes=4)
    layer = model.get_layer("stem_whiten")
    assert not layer.kernel.trainable and layer.bias.trainable
    x = correlated_images(64)
    assert fit_to_data(model, x) == 1
    feed = keras.Model(model.inputs, layer.output)
    white = np.asarray(feed.predict(x.astype("float32"), verbose=0))[..., :12].reshape(-1, 12)
    np.testing.assert_allclose(np.cov(white.T), np.eye(12), atol=5e-2)

    fitted, bias = layer.kernel.numpy().copy(), layer.bias.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), np.arange(64) % 4, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(layer.kernel.numpy(), fitted)  # not trained
    assert not np.array_equal(layer.bias.numpy(), bias)  # the bias trains

    model.save(tmp_path / "fast.keras")
    loaded = keras.models.load_model(tmp_path / "fast.keras")
    np.testing.assert_array_equal(loaded.get_layer("stem_whiten").kernel.numpy(), fitted)


def test_models_without_whitening_layers_fit_nothing() -> None:
    model = build_model(FastModel(name="fast", widths=[8]), input_shape=(16, 16, 3), num_classes=4)
    assert fit_to_data(model, correlated_images(8)) == 0


def test_a_whitened_stem_needs_two_filters_per_patch_value(tmp_path: Path) -> None:
    from cifar_ops.config import load_run_config

    path = tmp_path / "bad.yaml"
    path.write_text("experiment: x\nmodel: {name: fast, whiten: true, stem_filters: 16}\n")
    with pytest.raises(ConfigError, match=r"model.stem_filters.*24 filters.*not 16"):
        load_run_config(path)


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        raise KeyboardInterrupt("simulated preemption")


def test_the_engine_fits_the_stem_once_per_run_and_a_resume_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fitted: list[np.ndarray] = []

    def recording_fit(model, images):
        count = fit_to_data(model, images)
        fitted.append(model.get_layer("stem_whiten").kernel.numpy().copy())
        return count

    monkeypatch.setattr(training, "fit_to_data", recording_fit)
    config = tiny_config(
        model={"name": "fast", "widths": [8, 8, 8], "whiten": True},
        optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
        train={"epochs": 2, "batch_size": 32},
    )
    sink = MemorySink()
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=sink, run_id="whitened", callbacks=[StopAfterFirstEpoch()])
    assert len(fitted) == 1
    outcome = execute(config, sink=sink, run_id="whitened")
    assert outcome.status == "succeeded"
    assert len(fitted) == 1, "a resumed run must keep the checkpoint's stem, not refit it"
    saved = keras.models.load_model(outcome.model_path)
    np.testing.assert_array_equal(saved.get_layer("stem_whiten").kernel.numpy(), fitted[0])
    assert not np.allclose(fitted[0], 0)


def test_dirac_init_makes_each_conv_pass_its_input_through_on_the_first_filters() -> None:
    from cifar_ops.models.fast import PartialIdentity

    kernel = np.asarray(PartialIdentity()((3, 3, 4, 6)))
    identity = np.zeros((3, 3, 4, 4))
    identity[1, 1, range(4), range(4)] = 1.0
    np.testing.assert_array_equal(kernel[..., :4], identity)
    assert np.abs(kernel[..., 4:]).max() > 0  # the rest start random

    cfg = FastModel(name="fast", widths=[8, 8], dirac_init=True)
    model = build_model(cfg, input_shape=(16, 16, 3), num_classes=4)
    conv = model.get_layer("group2_conv2")  # 8 -> 8: entirely the identity
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    np.testing.assert_allclose(np.asarray(conv(x)), x, atol=1e-6)
    plain = build_model(
        FastModel(name="fast", widths=[8, 8]), input_shape=(16, 16, 3), num_classes=4
    )
    assert not np.allclose(np.asarray(plain.get_layer("group2_conv2")(x)), x)


def test_the_fitting_sample_is_drawn_from_the_whole_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splits can be ordered by class: the first images alone would whiten for one class."""
    from cifar_ops.models import whitening

    seen: list[np.ndarray] = []
    monkeypatch.setattr(whitening, "WHITENING_SAMPLE", 20)
    monkeypatch.setattr(PatchWhitening, "fit", lambda self, inputs: seen.append(inputs))
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, PatchWhitening(name="w")(inputs))
    images = np.repeat(np.arange(100, dtype=np.uint8), 48).reshape(100, 4, 4, 3)  # image i == i
    assert fit_to_data(model, images) == 1
    drawn = sorted({int(v) for v in np.unique(seen[0])})
    assert len(drawn) == 20 and drawn[0] < 25 and drawn[-1] >= 75
    fit_to_data(model, images)
    np.testing.assert_array_equal(seen[0], seen[1])  # the same sample every time

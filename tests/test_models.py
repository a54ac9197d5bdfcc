"""Model families: registry, shapes, parameter counts against the seeds, a training step, saving,
transfer weights files and fine-tuning. Tiny inputs keep each test to seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from pydantic import TypeAdapter

from cifar_ops.config import MODEL_NAMES, ModelConfig, load_run_config
from cifar_ops.errors import ModelError
from cifar_ops.models import build_model, registered_names, set_trainable_tail
from tests.conftest import REPO

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)

# Small but complete variants of every family (transfer bases with random weights, small inputs).
SMALL = {
    "simple_cnn": {"filters": [8, 16], "dense_units": 16},
    "conv4_bn": {"filters": [8, 8, 16, 16], "dense_units": 16, "dropout": 0.25},
    "custom_cnn": {"filters": [8, 16], "dense_units": 16, "dropout": 0.3},
    "vgg10": {"filters": [8, 16, 16], "dense_units": 16, "batch_norm": True, "dropout": 0.3},
    "resnet20": {"depth": 8, "base_filters": 4},
    "resnet_wide": {"filters": [8, 16], "dense_units": [16], "dropout": 0.3},
    "mobilenetv2": {"weights": "none", "input_size": 32, "dropout": 0.2},
    "efficientnetv2b0": {"weights": "none", "input_size": 32, "dense_units": 8},
    "fast": {"widths": [8, 16, 16], "stem_filters": 8},
}


def model_cfg(name: str, **options: Any) -> Any:
    return _ADAPTER.validate_python({"name": name, **options})


def images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Raw pixels in [0, 255] as float32, the way the data pipeline hands them over."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


def test_every_config_family_is_registered() -> None:
    assert sorted(MODEL_NAMES) == registered_names() == sorted(SMALL)


def test_unknown_name_is_a_model_error_listing_the_families() -> None:
    class Bogus:
        name = "lenet"

    with pytest.raises(ModelError, match="'lenet'.*resnet20.*simple_cnn"):
        build_model(Bogus())


@pytest.mark.parametrize(
    ("name", "options", "expected", "tolerance"),
    [
        ("simple_cnn", {}, 315_722, 0.0),  # seeds 003/004: 316K
        ("vgg10", {}, 403_000, 0.02),  # seed 004: 403K
        ("vgg10", {"batch_norm": True}, 403_000, 0.02),
        ("resnet20", {}, 270_000, 0.03),  # He et al.: 0.27M; seed 004: 275K
    ],
)
def test_parameter_counts_match_the_seeds(
    name: str, options: dict[str, Any], expected: int, tolerance: float
) -> None:
    count = build_model(model_cfg(name, **options)).count_params()
    assert abs(count - expected) <= tolerance * expected, count


def test_shipped_vgg10_config_has_the_seed_parameter_count() -> None:
    config = load_run_config(REPO / "jobs" / "configs" / "vgg10.yaml")
    assert abs(build_model(config.model).count_params() - 403_000) <= 0.02 * 403_000


@pytest.mark.parametrize("depth", [20, 32])
def test_resnet_depth_sets_the_number_of_blocks(depth: int) -> None:
    model = build_model(model_cfg("resnet20", depth=depth))
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 3 * (depth - 2) // 6
    assert model.name == f"resnet{depth}"


def test_options_change_the_stack() -> None:
    narrow = build_model(model_cfg("fast", widths=[16, 32], stem_filters=8))
    assert [layer.filters for layer in narrow.layers if isinstance(layer, keras.layers.Conv2D)] == [
        8,
        16,
        16,
        32,
        32,
    ]
    with_dropout = build_model(model_cfg("simple_cnn", dropout=0.5))
    assert any(isinstance(layer, keras.layers.Dropout) for layer in with_dropout.layers)
    assert not any(
        isinstance(layer, keras.layers.Dropout)
        for layer in build_model(model_cfg("simple_cnn")).layers
    )


@pytest.mark.parametrize("name", sorted(SMALL))
def test_family_builds_trains_a_step_and_round_trips_through_keras_file(
    name: str, tmp_path: Path
) -> None:
    model = build_model(model_cfg(name, **SMALL[name]), input_shape=(32, 32, 3), num_classes=7)
    assert model.output_shape == (None, 7)
    x, y = images(8), np.arange(8) % 7
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), probabilities)


def test_models_normalise_raw_pixels_inside_the_graph() -> None:
    """Pixels in [0, 255] go straight in: the first layer after the input rescales them."""
    for name in ("simple_cnn", "vgg10", "resnet20", "fast", "mobilenetv2"):
        model = build_model(model_cfg(name, **SMALL[name]))
        first = model.layers[1]
        assert isinstance(first, keras.layers.Rescaling | keras.layers.Normalization), name


def test_transfer_resizes_to_input_size_and_names_a_frozen_base() -> None:
    model = build_model(model_cfg("mobilenetv2", weights="none", input_size=48))
    assert model.get_layer("resize").output.shape[1:3] == (48, 48)
    base = model.get_layer("base")
    assert not base.trainable
    assert all(w.trainable is False for w in base.weights)
    head = [w for w in model.trainable_weights]
    assert head and all("base" not in w.path for w in head)


def test_set_trainable_tail_unfreezes_the_last_layers_but_not_batch_norm() -> None:
    model = build_model(model_cfg("mobilenetv2", weights="none", input_size=32))
    base = model.get_layer("base")
    set_trainable_tail(model, 10)
    tail, rest = base.layers[-10:], base.layers[:-10]
    assert not any(layer.trainable for layer in rest)
    for layer in tail:
        assert layer.trainable == (not isinstance(layer, keras.layers.BatchNormalization))
    assert any(layer.trainable and layer.weights for layer in tail)

    with pytest.raises(ModelError, match="no layer named 'base'"):
        set_trainable_tail(build_model(model_cfg("simple_cnn", **SMALL["simple_cnn"])), 3)


@pytest.mark.parametrize("part", ["whole", "base"])
def test_transfer_weights_path_loads_a_saved_weights_file(part: str, tmp_path: Path) -> None:
    options = {"weights": "none", "input_size": 32}
    source = build_model(model_cfg("mobilenetv2", **options))
    target = source if part == "whole" else source.get_layer("base")
    path = tmp_path / f"{part}.weights.h5"
    target.save_weights(path)

    fresh = build_model(model_cfg("mobilenetv2", **options))
    loaded = build_model(model_cfg("mobilenetv2", **{**options, "weights": str(path)}))
    x = images(4)
    src_base, fresh_base = source.get_layer("base"), fresh.get_layer("base")
    loaded_base = loaded.get_layer("base")
    np.testing.assert_array_equal(loaded_base.predict(x, verbose=0), src_base.predict(x, verbose=0))
    assert not np.array_equal(fresh_base.predict(x, verbose=0), src_base.predict(x, verbose=0))
    if part == "whole":
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), source.predict(x, verbose=0))


def test_transfer_weights_that_do_not_fit_or_do_not_exist_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is not a file"):
        build_model(model_cfg("mobilenetv2", weights=str(tmp_path / "missing.weights.h5")))
    other = build_model(model_cfg("simple_cnn", **SMALL["simple_cnn"]))
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ModelError, match="fits neither"):
        build_model(model_cfg("mobilenetv2", weights=str(path), input_size=32))

"""The Keras internals the resumable callbacks restore, checked on the installed Keras.

`ResumableEarlyStopping` and `ResumablePlateau` (callbacks.py) put back `wait`, `best`,
`best_epoch` and `cooldown_counter` after `on_train_begin`. These are not public API: a Keras that
renames them or stops reading them would silently make a resumed run stop or lower its rate on
other epochs. pyproject.toml pins Keras to its minor version; these tests say whether a new minor
still keeps them.
"""

from __future__ import annotations

import re
import tomllib

import keras
import numpy as np
import pytest

from tests.conftest import REPO


def _model(learning_rate: float = 0.1) -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model


def _rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_pyproject_pins_the_installed_keras_minor() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if re.match(r"keras\b", d)]
    assert len(pins) == 1, dependencies
    found = re.fullmatch(r"keras==(\d+)\.(\d+)\.\*", pins[0].replace(" ", ""))
    assert found, f"keras must be pinned to a minor version (keras==X.Y.*), not {pins[0]!r}"
    installed = tuple(int(part) for part in keras.__version__.split(".")[:2])
    assert installed == (int(found[1]), int(found[2]))


def test_early_stopping_counts_patience_in_wait_and_compares_with_best() -> None:
    model = _model()
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)
    stopping.set_model(model)
    stopping.on_train_begin()
    for name in ("wait", "best", "best_epoch", "best_weights"):
        assert hasattr(stopping, name), f"EarlyStopping has no {name!r} after on_train_begin"
    # a restored counter and best value decide the next epoch: one more bad epoch stops it
    stopping.wait, stopping.best, stopping.best_epoch = 2, 0.5, 4
    stopping.on_epoch_end(7, {"val_loss": 0.9})
    assert model.stop_training
    assert (stopping.wait, stopping.best, stopping.best_epoch) == (3, 0.5, 4)
    # and an epoch better than the restored best resets the counter and records the epoch
    model.stop_training = False
    stopping.on_train_begin()
    stopping.wait, stopping.best = 2, 0.5
    stopping.on_epoch_end(8, {"val_loss": 0.4})
    assert not model.stop_training
    assert (stopping.wait, stopping.best, stopping.best_epoch) == (0, 0.4, 8)


def test_plateau_counts_patience_in_wait_and_cooldown_in_cooldown_counter() -> None:
    model = _model(0.1)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.5, patience=3, cooldown=2, verbose=0
    )
    plateau.set_model(model)
    plateau.on_train_begin()
    for name in ("wait", "best", "cooldown_counter"):
        assert hasattr(plateau, name), f"ReduceLROnPlateau has no {name!r} after on_train_begin"
    plateau.wait, plateau.best = 2, 0.5
    plateau.on_epoch_end(5, {"val_loss": 0.9})
    assert _rate(model) == pytest.approx(0.05)
    assert (plateau.wait, plateau.cooldown_counter) == (0, 2)
    # a restored cooldown holds the rate even when patience is exhausted
    plateau.on_train_begin()
    plateau.wait, plateau.best, plateau.cooldown_counter = 5, 0.5, 2
    plateau.on_epoch_end(6, {"val_loss": 0.9})
    assert _rate(model) == pytest.approx(0.05)
    assert (plateau.wait, plateau.cooldown_counter) == (0, 1)


def test_early_stopping_restores_the_best_weights_it_holds() -> None:
    model = _model()
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=1, restore_best_weights=True
    )
    stopping.set_model(model)
    stopping.on_train_begin()
    best = [np.full_like(w, 7.0) for w in model.get_weights()]
    stopping.wait, stopping.best, stopping.best_epoch, stopping.best_weights = 0, 0.5, 1, best
    stopping.on_epoch_end(2, {"val_loss": 0.9})
    stopping.on_train_end()
    assert model.stop_training
    for got, want in zip(model.get_weights(), best, strict=True):
        np.testing.assert_array_equal(got, want)

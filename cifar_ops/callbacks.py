"""Keras callbacks of a run: epoch records to the sink, per-epoch checkpoints, resumable state.

Keras' `EarlyStopping` and `ReduceLROnPlateau` forget their counters at `on_train_begin`; the
`Resumable*` subclasses put back what the last checkpoint recorded, so a resumed run stops and
lowers its rate on the same epochs an uninterrupted one would. `StopOnSignal` turns Ctrl-C and
SIGTERM into exceptions between steps, where raising cannot crash TensorFlow.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from cifar_ops.checkpoints import RunDirectory, TrainingState
from cifar_ops.records import EpochRecord, RunSink


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters and best weights survive a restart (kept in the run dir)."""

    def __init__(self, run_dir: RunDirectory, restored: dict[str, Any] | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.best_weights_path = run_dir.checkpoint_dir / "early-stopping-best.npz"
        self.restored = restored

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self.restored:
            self.wait = self.restored["wait"]
            self.best = self.restored["best"]
            self.best_epoch = self.restored["best_epoch"]
            if self.restore_best_weights and self.best_weights_path.exists():
                with np.load(self.best_weights_path) as saved:
                    self.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]
            self.restored = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        before = (self.best_epoch, self.best)
        super().on_epoch_end(epoch, logs)
        improved = (self.best_epoch, self.best) != before
        if self.restore_best_weights and improved and self.best_weights is not None:
            tmp = self.best_weights_path.with_name("tmp-early-stopping-best.npz")
            np.savez(tmp, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
            tmp.replace(self.best_weights_path)

    def state(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": _plain(self.best), "best_epoch": self.best_epoch}


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose patience counter and best value survive a restart."""

    def __init__(self, restored: dict[str, Any] | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.restored = restored

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self.restored:
            self.wait = self.restored["wait"]
            self.cooldown_counter = self.restored["cooldown_counter"]
            self.best = self.restored["best"]
            self.restored = None

    def state(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "best": _plain(self.best),
        }


class EpochLogger(keras.callbacks.Callback):
    """Writes one `EpochRecord` per epoch to the sink, NaN included, and keeps it in the state.

    The learning rate is the one in force at the epoch's first step (a plateau cut at the end of
    an epoch shows in the next one); images/s counts training only, not validation.
    """

    def __init__(
        self, sink: RunSink, run_id: str, state: TrainingState, phase: str, train_images: int
    ):
        super().__init__()
        self.sink, self.run_id, self.state = sink, run_id, state
        self.phase, self.train_images = phase, train_images
        self._began = self._trained = 0.0
        self._rate = math.nan

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._began = time.perf_counter()
        self._trained = 0.0
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._began and not self._trained:
            self._trained = time.perf_counter() - self._began

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self._began
        trained = self._trained or seconds
        record = EpochRecord(
            epoch=epoch + 1,
            loss=_metric(logs, "loss"),
            accuracy=_metric(logs, "accuracy"),
            val_loss=_optional(logs, "val_loss"),
            val_accuracy=_optional(logs, "val_accuracy"),
            learning_rate=self._rate,
            seconds=seconds,
            images_per_second=self.train_images / trained if trained > 0 else math.nan,
            phase=self.phase,
        )
        self.sink.log_epoch(self.run_id, record)
        self.state.history = [r for r in self.state.history if r["epoch"] != record.epoch]
        self.state.history.append(record.__dict__.copy())


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state and callback state after every epoch (after the logger)."""

    def __init__(
        self,
        run_dir: RunDirectory,
        state: TrainingState,
        resumables: dict[str, ResumableEarlyStopping | ResumablePlateau | BestModelCheckpoint],
    ):
        super().__init__()
        self.run_dir, self.state, self.resumables = run_dir, state, resumables

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.state.epochs_done = epoch + 1
        self.capture()
        self.run_dir.save(self.model, self.state)

    def capture(self) -> None:
        for name, callback in self.resumables.items():
            self.state.callbacks[name] = callback.state()


class BestModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """The best model as `.keras`; its best value so far is restored on resume."""

    def state(self) -> dict[str, Any]:
        return {"best": _plain(self.best)}


def _metric(logs: dict[str, Any], key: str) -> float:
    value = logs.get(key)
    return float(value) if value is not None else math.nan


def _optional(logs: dict[str, Any], key: str) -> float | None:
    value = logs.get(key)
    return float(value) if value is not None else None


def _plain(value: Any) -> float | None:
    return None if value is None else float(value)


class StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) and SIGTERM during training, raised where it is safe to raise them.

    A signal handler that raises lands wherever the main thread happens to be, including inside
    TensorFlow's C++ -> Python calls, which can crash the process (seen: SIGSEGV in
    `convert_to_eager_tensor` at an epoch start). So the handlers only record the signal, and this
    Keras callback raises it at the next batch or epoch boundary: `KeyboardInterrupt` for Ctrl-C,
    `RunPreempted` for SIGTERM. A second Ctrl-C raises at once, for a run stuck in one long step.
    A signal that arrives after the last epoch lets the run finish its evaluation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None

    @contextlib.contextmanager
    def catching(self) -> Iterator[None]:
        """Install the recording handlers (main thread only; elsewhere a no-op)."""

        def record(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT and self.received == signal.SIGINT:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now
            self.received = signum

        try:
            previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _raise_if_signalled(self, *args: Any, **kwargs: Any) -> None:
        if self.received == signal.SIGTERM:
            from cifar_ops.runner import RunPreempted

            raise RunPreempted("signal SIGTERM")
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt

    # Keras calls these between steps, from plain Python: a safe place to raise.
    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _raise_if_signalled
    on_epoch_begin = on_epoch_end = _raise_if_signalled

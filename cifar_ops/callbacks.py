"""Keras callbacks of a run: one record per epoch for every listener, checkpoints, resumable state.

`EpochRecorder` builds each epoch's `EpochRecord` once (metrics, the rate in force, timing) and
hands it to its listeners in order: the warehouse (`SinkWriter`), the checkpoint
(`EpochCheckpoint`, after the warehouse, so a resumed run never skips an epoch the warehouse
lacks), then anything else with an `on_epoch_record` method, such as the Prometheus exporter.
Keras' `EarlyStopping` and `ReduceLROnPlateau` forget their counters at `on_train_begin`; the
`Resumable*` subclasses put back what the last checkpoint recorded, so a resumed run stops and
lowers its rate on the same epochs an uninterrupted one would. `StopOnSignal` turns Ctrl-C and
SIGTERM into exceptions between steps, where raising cannot crash TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np

from cifar_ops.checkpoints import (
    EARLY_STOPPING_BEST,
    RunDirectory,
    TrainingState,
    write_bytes_atomically,
)
from cifar_ops.errors import Preempted
from cifar_ops.records import EpochRecord, RunSink

log = logging.getLogger(__name__)


def batches_done(batch: int, params: dict[str, Any] | None) -> int:
    """Batches of the epoch done when Keras calls `on_train_batch_end(batch)`.

    With `steps_per_execution` N Keras calls it once per group, with the group's last index,
    which overshoots the epoch's steps in a last, shorter group. Both data paths give Keras
    the epoch's length; without one, a last group would be counted as full.
    """
    steps = (params or {}).get("steps")
    return min(batch + 1, steps) if steps else batch + 1


@runtime_checkable
class EpochListener(Protocol):
    """Anything that takes each finished epoch's record (the sink writer, the exporter)."""

    def on_epoch_record(self, record: EpochRecord) -> None: ...


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters and best weights survive a restart (kept in the run dir)."""

    def __init__(self, run_dir: RunDirectory, restored: dict[str, Any] | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.best_weights_path = run_dir.checkpoint_dir / EARLY_STOPPING_BEST
        self.restored = restored

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        if self.restored:
            self.wait = self.restored["wait"]
            self.best = self.restored["best"]
            self.best_epoch = self.restored["best_epoch"]
            if self.restore_best_weights and self.best_weights_path.exists():
                self.best_weights = self._load_best_weights()
            self.restored = None

    def _load_best_weights(self) -> list[np.ndarray] | None:
        """The saved best weights; None (nothing to restore at the end) when unreadable."""
        try:
            with np.load(self.best_weights_path) as saved:
                return [saved[f"w{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError, KeyError) as exc:
            log.warning(
                "%s is unreadable (%s); its best weights are lost", self.best_weights_path, exc
            )
            return None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        before = (self.best_epoch, self.best)
        super().on_epoch_end(epoch, logs)
        improved = (self.best_epoch, self.best) != before
        if self.restore_best_weights and improved and self.best_weights is not None:
            buffer = io.BytesIO()
            # allow_pickle named (its default) so mypy knows no w{i} key can fill it
            weights = {f"w{i}": w for i, w in enumerate(self.best_weights)}
            np.savez(buffer, allow_pickle=True, **weights)
            write_bytes_atomically(self.best_weights_path, buffer.getvalue())

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


class EpochRecorder(keras.callbacks.Callback):
    """Builds one `EpochRecord` per epoch, NaN included, and hands it to each listener in order.

    The learning rate is the one in force at the epoch's first step (a plateau cut at the end of
    an epoch shows in the next one); images/s counts training only, not validation.
    """

    def __init__(self, phase: str, train_images: int, listeners: Sequence[EpochListener]):
        super().__init__()
        self.phase, self.train_images, self.listeners = phase, train_images, list(listeners)
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
        for listener in self.listeners:
            listener.on_epoch_record(record)


class SinkWriter:
    """Writes each epoch's record to the run's sink (the warehouse)."""

    def __init__(self, sink: RunSink, run_id: str):
        self.sink, self.run_id = sink, run_id

    def on_epoch_record(self, record: EpochRecord) -> None:
        self.sink.log_epoch(self.run_id, record)


class EpochCheckpoint:
    """Saves weights, optimizer state, history and callback state once an epoch is recorded."""

    def __init__(
        self,
        model: keras.Model,
        run_dir: RunDirectory,
        state: TrainingState,
        resumables: dict[str, Resumable],
    ):
        self.model, self.run_dir, self.state, self.resumables = model, run_dir, state, resumables

    def on_epoch_record(self, record: EpochRecord) -> None:
        self.state.history = [r for r in self.state.history if r["epoch"] != record.epoch]
        self.state.history.append(asdict(record))
        self.state.epochs_done = record.epoch
        self.capture()
        self.run_dir.save(self.model, self.state)

    def capture(self) -> None:
        for name, callback in self.resumables.items():
            self.state.callbacks[name] = callback.state()


class BestModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """The best model as `.keras`; its best value so far is restored on resume.

    Keras writes the file in place, so a run killed mid-save would leave a torn `best.keras` over
    the good one: it writes `<stem>.partial.keras` beside it instead, renamed over the real name
    (atomic on one file system) once the save has finished."""

    def __init__(self, filepath: str, **kwargs: Any) -> None:
        self.final_path = Path(filepath)
        partial = self.final_path.with_name(self.final_path.stem + ".partial.keras")
        super().__init__(str(partial), **kwargs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        partial = Path(self.filepath)
        if partial.exists():  # saved this epoch (a better value), and the save completed
            os.replace(partial, self.final_path)

    def state(self) -> dict[str, Any]:
        return {"best": _plain(self.best)}


# the callbacks whose `state()` the checkpoint keeps
Resumable = ResumableEarlyStopping | ResumablePlateau | BestModelCheckpoint


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
    `errors.Preempted` for SIGTERM. A second Ctrl-C raises at once, for a run stuck in one long
    step. A signal that arrives after the last epoch lets the run finish its evaluation.
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
            raise Preempted("signal SIGTERM")
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt

    # Keras calls these between steps, from plain Python: a safe place to raise.
    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _raise_if_signalled
    on_epoch_begin = on_epoch_end = _raise_if_signalled

"""A rich progress display for `cifar-ops run`: a bar per epoch, then one line of its metrics."""

from __future__ import annotations

import math
from typing import Any

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cifar_ops.callbacks import batches_done


class RichProgress(keras.callbacks.Callback):
    """Shows batches of the current epoch as a bar (on a terminal); prints each epoch as a line."""

    def __init__(self, console: Console, label: str = ""):
        super().__init__()
        self.console = console
        self.label = label
        self.progress: Progress | None = None
        self.task: Any = None
        self._rate = math.nan

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.close()
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if not self.console.is_terminal:  # a log file gets the epoch lines only
            return
        total = (self.params or {}).get("steps")
        epochs = (self.params or {}).get("epochs")
        self.progress = Progress(
            TextColumn(f"{self.label}epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[loss]}"),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=total, loss="")
        self.progress.start()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.progress is not None:
            loss = (logs or {}).get("loss")
            shown = f"loss {float(loss):.4f}" if loss is not None else ""
            done = batches_done(batch, self.params)
            self.progress.update(self.task, completed=done, loss=shown)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.close()
        logs = logs or {}
        parts = [f"{self.label}epoch {epoch + 1:>3}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                parts.append(f"{key} {float(logs[key]):.4f}")
        parts.append(f"lr {self._rate:.3g}")
        self.console.print("  ".join(parts), highlight=False)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live bar (also after an error, when Keras calls no end hook)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

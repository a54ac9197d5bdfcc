"""The run's progress bar counts batches, also when Keras reports a group of them at once."""

from __future__ import annotations

import io
from typing import Any

import keras
from rich.console import Console

from cifar_ops.progress import RichProgress
from tests.monitoring_support import tiny_fit


class BarReader(keras.callbacks.Callback):
    """Reads the bar's count after the progress callback has seen each reported batch."""

    def __init__(self, progress: RichProgress) -> None:
        super().__init__()
        self.progress = progress
        self.counts: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        assert self.progress.progress is not None
        self.counts.append(self.progress.progress.tasks[0].completed)


def test_the_bar_reaches_the_epochs_batches_with_grouped_steps() -> None:
    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, width=100))
    reader = BarReader(progress)
    tiny_fit([progress, reader], epochs=2, steps_per_execution=2)  # 3 batches: groups of 2, 1
    assert reader.counts == [2, 3, 2, 3]
    assert out.getvalue().count("epoch   1") == 1 and "epoch   2" in out.getvalue()

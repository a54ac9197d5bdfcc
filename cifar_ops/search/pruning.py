"""The engine's side of a study: each epoch's metric reported to the trial, which may prune it.

`TrialReporter` is an epoch listener (`callbacks.EpochListener`): it gets the engine's one
`EpochRecord` per epoch after the sink and the checkpoint, so the epoch that decides a pruning is
already in the warehouse and resumable. When the study's pruner says so it records the epoch
(`pruned_at`) and stops training; `training.fit` then ends the run and the runner finishes it
as `pruned`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras

from cifar_ops.records import EpochRecord

if TYPE_CHECKING:
    import optuna


class TrialReporter(keras.callbacks.Callback):
    """Reports `metric` of every epoch to an Optuna trial; stops the run when it is pruned."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.pruned_at: int | None = None

    def on_epoch_record(self, record: EpochRecord) -> None:
        value: Any = getattr(record, self.metric)
        if value is None or not math.isfinite(value):
            return  # a diverged epoch ends the run as failed; nothing to compare
        self.trial.report(float(value), record.epoch)
        if self.trial.should_prune():
            self.pruned_at = record.epoch
            self.model.stop_training = True

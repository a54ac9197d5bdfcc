"""The engine's side of a study: each epoch's metric reported to the trial, which may prune it.

`TrialReporter` is an epoch listener (`callbacks.EpochListener`): it gets the engine's one
`EpochRecord` per epoch after the sink and the checkpoint, so the epoch that decides a pruning is
already in the warehouse and resumable. When the study's pruner says so it records the epoch
(`pruned_at`) and stops training; `training.fit` then ends the run and the runner finishes it
as `pruned`. The study is a database like the warehouse: a write that fails is retried a few
times, then raised as a WarehouseError, which the worker treats as an infrastructure error (the
trial is queued again and resumes), not as the trial's own failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import keras

from cifar_ops.errors import WarehouseError
from cifar_ops.records import EpochRecord

if TYPE_CHECKING:
    import optuna

T = TypeVar("T")
RETRY_DELAYS_S = (0.5, 2.0, 5.0)  # waits before the retries of a failed study write


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
        _retried(lambda: self.trial.report(float(value), record.epoch), "reporting")
        if _retried(self.trial.should_prune, "asking the pruner about"):
            self.pruned_at = record.epoch
            self.model.stop_training = True


def _retried(call: Callable[[], T], action: str) -> T:
    """`call`, again after each of `RETRY_DELAYS_S` while the study database fails."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    from cifar_ops.redaction import redact_url
    from cifar_ops.warehouse.engine import driver_reason

    for delay in RETRY_DELAYS_S:
        try:
            return call()
        except (SQLAlchemyError, StorageInternalError):
            time.sleep(delay)
    try:
        return call()
    except (SQLAlchemyError, StorageInternalError) as exc:
        raise WarehouseError(
            f"the Optuna study failed {action} an epoch {len(RETRY_DELAYS_S) + 1} times: "
            f"{redact_url(driver_reason(exc))}"
        ) from exc

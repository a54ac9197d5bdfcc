"""Plain records that flow from a run into the warehouse, and the narrow interface that takes them.

The trainer, the Prometheus exporter and the warehouse store all speak these dataclasses, so none
of them imports another's internals. `RunSink` is what a run writes to; `warehouse.store.Store`
implements it for SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from cifar_ops.vocabulary import HEADLINE_METRICS, TERMINAL_STATUSES, ExecutorKind, RunStatus

__all__ = [
    "TERMINAL_STATUSES",
    "CalibrationBin",
    "ClassMetric",
    "EpochRecord",
    "EvaluationRecord",
    "ExecutorKind",
    "HEADLINE_METRICS",
    "Predictions",
    "RunFinish",
    "RunSink",
    "RunStart",
    "RunStatus",
]


@dataclass(frozen=True)
class RunStart:
    """What is known when a run is registered (queued by `submit`, or started by `run`)."""

    run_id: str  # uuid4 hex string
    experiment: str
    model_name: str
    config: dict[str, Any]  # RunConfig.model_dump(mode="json")
    config_hash: str
    status: RunStatus = RunStatus.RUNNING
    trial_index: int | None = None
    trial_params: dict[str, Any] | None = None
    trial_number: int | None = None  # the Optuna trial running it (a retry gets a new number)
    git_sha: str | None = None
    dataset_fingerprint: str | None = None
    executor: ExecutorKind = ExecutorKind.LOCAL
    job_name: str | None = None
    hardware: str | None = None  # where it trained and its dtype policy: "CPU x2 (x86_64), float32"
    param_count: int | None = None
    started_at: datetime | None = None


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch; (run_id, epoch) is its natural key, so a retry rewrites the same row."""

    epoch: int  # 1-based, across both phases of a two-phase run
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float
    images_per_second: float
    phase: str = "train"  # "train", or "fine_tune" for the second phase of transfer learning


@dataclass(frozen=True)
class ClassMetric:
    class_index: int
    class_name: str
    precision: float
    recall: float
    f1: float
    support: int
    accuracy: float  # one-vs-rest accuracy of this class


@dataclass(frozen=True)
class CalibrationBin:
    bin_index: int
    lower: float
    upper: float
    count: int
    mean_confidence: float | None  # None for an empty bin
    accuracy: float | None


@dataclass
class Predictions:
    """One row per evaluated image, held as columns so they can be bulk-copied."""

    image_index: np.ndarray  # int64, position in the evaluated split
    true_class: np.ndarray  # int64
    predicted_class: np.ndarray  # int64
    confidence: np.ndarray  # float64, probability of the predicted class
    image_ref: list[str] | None = None  # source file of each image (folder source), for reports

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    @property
    def correct(self) -> np.ndarray:
        return self.true_class == self.predicted_class


@dataclass
class EvaluationRecord:
    """Everything measured on one split; the store writes it in a single transaction."""

    split: str  # "test" (or "validation" where the source has no test split)
    loss: float
    accuracy: float
    class_names: list[str]
    class_metrics: list[ClassMetric]
    confusion: np.ndarray  # (n_classes, n_classes) int64, rows = true, columns = predicted
    expected_calibration_error: float
    calibration: list[CalibrationBin] = field(default_factory=list)
    predictions: Predictions | None = None


@dataclass(frozen=True)
class RunFinish:
    """The terminal state of a run and its headline numbers."""

    status: RunStatus
    reason: str | None = None
    best_epoch: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    overfitting_gap: float | None = None  # train accuracy minus test (else validation) accuracy
    artifact_uri: str | None = None
    param_count: int | None = None
    pruned_epoch: int | None = None  # the epoch after which the search's pruner stopped it
    finished_at: datetime | None = None


class RunSink(Protocol):
    """Where a run writes: idempotent, so a retried pod or re-sent batch never duplicates rows."""

    def start_run(self, start: RunStart) -> None:
        """Create the run row, or mark an existing (queued or interrupted) one running again."""

    def log_epoch(self, run_id: str, epoch: EpochRecord) -> None:
        """Upsert one epoch row."""

    def log_evaluation(self, run_id: str, evaluation: EvaluationRecord) -> None:
        """Write class metrics, confusion matrix, calibration and predictions, all or nothing."""

    def finish_run(self, run_id: str, finish: RunFinish) -> None:
        """Set the terminal status and headline numbers."""

    def last_epoch(self, run_id: str) -> int:
        """The highest epoch logged for the run (0 if none), for progress checks; resume itself
        continues from the run's checkpoint (checkpoints.py), not from this."""

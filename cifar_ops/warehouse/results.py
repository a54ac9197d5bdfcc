"""What the store's reads return: plain, frozen dataclasses, never ORM rows or Result objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cifar_ops.records import CalibrationBin, ClassMetric, EpochRecord


@dataclass(frozen=True)
class RunSummary:
    """One row of `runs list`: a run's identity, state and headline numbers."""

    run_id: str
    experiment: str
    model_name: str
    status: str
    status_reason: str | None
    trial_index: int | None
    trial_params: dict[str, Any] | None
    config_hash: str
    param_count: int | None
    executor: str
    job_name: str | None
    hardware: str | None
    git_sha: str | None
    dataset_fingerprint: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    epochs_logged: int
    best_epoch: int | None
    train_accuracy: float | None
    train_loss: float | None
    val_accuracy: float | None
    val_loss: float | None
    test_accuracy: float | None
    test_loss: float | None
    overfitting_gap: float | None
    artifact_uri: str | None
    trial_number: int | None = None  # the Optuna trial (a search run through a study)
    pruned_epoch: int | None = None  # status pruned: the last epoch it trained

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class EvaluationResult:
    """One logged evaluation: headline numbers, per-class metrics, confusion and calibration."""

    split: str
    loss: float | None
    accuracy: float
    expected_calibration_error: float | None
    class_names: list[str]
    prediction_count: int
    evaluated_at: datetime
    class_metrics: list[ClassMetric] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # rows = true, columns = predicted
    calibration: list[CalibrationBin] = field(default_factory=list)


@dataclass(frozen=True)
class RunDetail:
    """Everything `runs show` and the HTML report need about one run, predictions aside."""

    summary: RunSummary
    config: dict[str, Any]
    epochs: list[EpochRecord]
    evaluations: list[EvaluationResult]


@dataclass(frozen=True)
class PredictionRow:
    split: str
    image_index: int
    true_class: int
    predicted_class: int
    confidence: float
    correct: bool
    image_ref: str | None


@dataclass(frozen=True)
class ExperimentSummary:
    name: str
    description: str | None
    search_method: str | None
    search_parameters: dict[str, Any] | None
    trial_count: int | None
    created_at: datetime
    runs: int
    succeeded: int

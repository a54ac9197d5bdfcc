"""Synthetic but consistent run records, for the warehouse's tests and benchmark.

The numbers are computed from random predictions with sklearn, so class metrics, confusion
matrix, calibration and accuracy agree with each other as a real evaluation's would.
"""

from __future__ import annotations

import uuid

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cifar_ops.records import (
    CalibrationBin,
    ClassMetric,
    EpochRecord,
    EvaluationRecord,
    Predictions,
    RunFinish,
    RunStart,
)

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def run_start(
    experiment: str = "bench",
    *,
    run_id: str | None = None,
    model_name: str = "custom_cnn",
    trial_index: int | None = None,
    **overrides: object,
) -> RunStart:
    config = {"experiment": experiment, "model": {"name": model_name}, "seed": 42}
    fields: dict[str, object] = {
        "run_id": run_id or uuid.uuid4().hex,
        "experiment": experiment,
        "model_name": model_name,
        "config": config,
        "config_hash": uuid.uuid5(uuid.NAMESPACE_OID, repr(config)).hex * 2,
        "trial_index": trial_index,
        "trial_params": {"optimizer.learning_rate": 0.01} if trial_index is not None else None,
        "git_sha": "0" * 40,
        "dataset_fingerprint": "synthetic",
        "hardware": "cpu",
        "param_count": 1234,
    }
    fields.update(overrides)
    return RunStart(**fields)  # type: ignore[arg-type]


def epoch(number: int, *, accuracy: float = 0.5, phase: str = "train") -> EpochRecord:
    return EpochRecord(
        epoch=number,
        loss=1.0 / number,
        accuracy=accuracy,
        val_loss=1.2 / number,
        val_accuracy=accuracy * 0.9,
        learning_rate=0.01,
        seconds=1.5,
        images_per_second=1000.0,
        phase=phase,
    )


def evaluation(
    n: int = 1000,
    *,
    seed: int = 0,
    class_names: list[str] | None = None,
    split: str = "test",
    bins: int = 15,
    with_refs: bool = False,
) -> EvaluationRecord:
    """An evaluation of `n` random predictions, about 70% correct."""
    names = class_names or CIFAR10_CLASSES
    k = len(names)
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    wrong = rng.random(n) > 0.7
    predicted = np.where(wrong, (true + rng.integers(1, k, n)) % k, true)
    confidence = np.clip(rng.beta(5, 2, n), 1.0 / k, 1.0)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=range(k), zero_division=0
    )
    matrix = confusion_matrix(true, predicted, labels=range(k))
    metrics = []
    for i, name in enumerate(names):
        tp = matrix[i, i]
        tn = n - matrix[i, :].sum() - matrix[:, i].sum() + tp
        metrics.append(
            ClassMetric(
                i, name, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]),
                float((tp + tn) / n),
            )
        )  # fmt: skip
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    correct = true == predicted
    calibration = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else None
        acc = float(correct[mask].mean()) if count else None
        if count:
            ece += count / n * abs(acc - conf)  # type: ignore[operator]
        calibration.append(
            CalibrationBin(b, float(edges[b]), float(edges[b + 1]), count, conf, acc)
        )
    predictions = Predictions(
        image_index=np.arange(n, dtype=np.int64),
        true_class=true.astype(np.int64),
        predicted_class=predicted.astype(np.int64),
        confidence=confidence.astype(np.float64),
        image_ref=[f"images/{i:06d}.png" for i in range(n)] if with_refs else None,
    )
    return EvaluationRecord(
        split=split,
        loss=0.9,
        accuracy=float(correct.mean()),
        class_names=list(names),
        class_metrics=metrics,
        confusion=matrix.astype(np.int64),
        expected_calibration_error=ece,
        calibration=calibration,
        predictions=predictions,
    )


def finish(status: str = "succeeded", *, test_accuracy: float = 0.7) -> RunFinish:
    return RunFinish(
        status=status,  # type: ignore[arg-type]
        best_epoch=3,
        train_loss=0.5,
        train_accuracy=0.8,
        val_loss=0.8,
        val_accuracy=0.72,
        test_loss=0.85,
        test_accuracy=test_accuracy,
        overfitting_gap=0.8 - test_accuracy,
        artifact_uri="runs/x/model.keras",
    )

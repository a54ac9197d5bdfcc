"""What a trained model scores on a split, measured with sklearn.metrics.

`score_probabilities` is pure NumPy in, records out (loss, accuracy, per-class metrics, confusion
matrix, calibration, one row per image), so its numbers are checked against sklearn on known
cases; `predict_split` runs a model over a split to get those probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

from cifar_ops.records import CalibrationBin, ClassMetric, EvaluationRecord, Predictions

PREDICT_BATCH = 256


@dataclass(frozen=True)
class SplitScore:
    """Loss and accuracy of one split (for the train/validation/test headline numbers)."""

    loss: float
    accuracy: float


def predict_split(
    model: Any, images: np.ndarray, batch_size: int = PREDICT_BATCH, *, flip_tta: bool = False
) -> np.ndarray:
    """Class probabilities (N, classes) as float64, in batches, for uint8 or float images.

    With `flip_tta` each image's probabilities are averaged with its mirror image's (test-time
    augmentation: the flip the model was trained with, for a cheap accuracy gain).
    """
    import tensorflow as tf

    pixels = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    pixels = pixels.map(lambda x: tf.cast(x, tf.float32)).prefetch(tf.data.AUTOTUNE)
    probabilities = np.asarray(model.predict(pixels, verbose=0), dtype=np.float64)
    if flip_tta:
        mirrored = pixels.map(lambda x: tf.reverse(x, axis=[2]))
        probabilities = (probabilities + model.predict(mirrored, verbose=0)) / 2.0
    return probabilities


def split_score(labels: np.ndarray, probabilities: np.ndarray) -> SplitScore:
    """Cross-entropy (no label smoothing) and accuracy of probabilities against true labels."""
    classes = probabilities.shape[1]
    return SplitScore(
        loss=float(log_loss(labels, _clipped(probabilities), labels=list(range(classes)))),
        accuracy=float(accuracy_score(labels, probabilities.argmax(axis=1))),
    )


def score_probabilities(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    split: str = "test",
    bins: int = 15,
    refs: Sequence[str] | None = None,
    log_predictions: bool = True,
) -> EvaluationRecord:
    """Everything measured on one split, as the warehouse stores it."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = list(range(len(class_names)))
    predicted = probabilities.argmax(axis=1).astype(np.int64)
    confidence = probabilities.max(axis=1).astype(np.float64)
    score = split_score(labels, probabilities)
    matrix = confusion_matrix(labels, predicted, labels=classes).astype(np.int64)
    ece, calibration = calibration_bins(labels, predicted, confidence, bins)
    predictions = None
    if log_predictions:
        predictions = Predictions(
            image_index=np.arange(len(labels), dtype=np.int64),
            true_class=labels,
            predicted_class=predicted,
            confidence=confidence,
            image_ref=list(refs) if refs is not None else None,
        )
    return EvaluationRecord(
        split=split,
        loss=score.loss,
        accuracy=score.accuracy,
        class_names=list(class_names),
        class_metrics=class_metrics(labels, predicted, matrix, class_names),
        confusion=matrix,
        expected_calibration_error=ece,
        calibration=calibration,
        predictions=predictions,
    )


def class_metrics(
    labels: np.ndarray, predicted: np.ndarray, matrix: np.ndarray, class_names: Sequence[str]
) -> list[ClassMetric]:
    """Precision, recall, F1 and support per class, and one-vs-rest accuracy from the matrix."""
    classes = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    total = matrix.sum()
    rows = []
    for i, name in enumerate(class_names):
        true_pos = matrix[i, i]
        false_pos = matrix[:, i].sum() - true_pos
        false_neg = matrix[i, :].sum() - true_pos
        true_neg = total - true_pos - false_pos - false_neg
        rows.append(
            ClassMetric(
                class_index=i,
                class_name=name,
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
                accuracy=float((true_pos + true_neg) / total) if total else 0.0,
            )
        )
    return rows


def calibration_bins(
    labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, bins: int
) -> tuple[float, list[CalibrationBin]]:
    """Expected calibration error over `bins` equal-width confidence bins, and the bins.

    A bin holds confidences in (lower, upper]; the first also holds 0. ECE is the mean gap
    between accuracy and confidence per bin, weighted by the bin's share of images.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    correct = labels == predicted
    ece, rows = 0.0, []
    for i in range(bins):
        inside = which == i
        count = int(inside.sum())
        mean_confidence = float(confidence[inside].mean()) if count else None
        accuracy = float(correct[inside].mean()) if count else None
        if count:
            ece += count / len(labels) * abs(accuracy - mean_confidence)  # type: ignore[operator]
        rows.append(
            CalibrationBin(
                bin_index=i,
                lower=float(edges[i]),
                upper=float(edges[i + 1]),
                count=count,
                mean_confidence=mean_confidence,
                accuracy=accuracy,
            )
        )
    return float(ece), rows


def _clipped(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities kept off 0 and renormalised, so a confident mistake has a finite loss."""
    clipped = np.clip(probabilities, 1e-7, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)

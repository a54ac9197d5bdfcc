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
TINY = float(np.finfo(np.float32).tiny)  # floor of a probability before its log


@dataclass(frozen=True)
class SplitScore:
    """Loss and accuracy of one split (for the train/validation/test headline numbers)."""

    loss: float
    accuracy: float


def predict_split(
    model: Any,
    images: np.ndarray,
    batch_size: int = PREDICT_BATCH,
    *,
    tta: str = "none",
    average: str = "probabilities",
) -> np.ndarray:
    """Class probabilities (N, classes) as float64, in batches, for uint8 or float images.

    Test-time augmentation (`tta`, airbench's levels) scores views the model was trained on:
    `flip` averages each image with its mirror; `flip_translate` takes half of that and half of
    the same for the image shifted one pixel up-left and one pixel down-right (reflect padding).
    `average="logits"` weighs the views' log-probabilities instead and returns their softmax:
    log-probabilities are the logits less a per-view constant, which softmax removes, so this is
    airbench's mean of logits for any model that ends in a softmax.
    """
    from keras import ops

    if average not in ("probabilities", "logits"):
        raise ValueError(f"average: {average!r} is not one of probabilities, logits")
    if tta == "none":
        average = "probabilities"  # one view: nothing to combine

    def probabilities_of(view) -> np.ndarray:
        parts = [
            np.asarray(_predict_batch(model, view(batch)), np.float64)
            for batch in _batches(images, batch_size)
        ]
        scores = np.concatenate(parts)
        return np.log(np.maximum(scores, TINY)) if average == "logits" else scores

    def result(mean: np.ndarray) -> np.ndarray:
        if average == "probabilities":
            return mean
        exp = np.exp(mean - mean.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def with_mirror(view) -> np.ndarray:
        return (probabilities_of(view) + probabilities_of(lambda x: ops.flip(view(x), 2))) / 2

    if tta == "none":
        return probabilities_of(lambda x: x)
    if tta == "flip":
        return result(with_mirror(lambda x: x))
    if tta != "flip_translate":
        raise ValueError(f"tta: {tta!r} is not one of none, flip, flip_translate")
    shifted = [with_mirror(lambda x, d=d: shift(x, d)) for d in (-1, 1)]
    return result(with_mirror(lambda x: x) / 2 + (shifted[0] + shifted[1]) / 4)


def _predict_batch(model: Any, batch: Any) -> Any:
    """The model's outputs for one batch. Over several replicas (a TensorFlow `MirroredStrategy`)
    `predict_on_batch` gives every replica the whole batch and returns all their outputs, one
    copy each; `predict` splits the batch across them instead."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow backend only
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        return model.predict(batch, batch_size=len(batch), verbose=0)
    return model.predict_on_batch(batch)


def _batches(images: np.ndarray, batch_size: int) -> Any:
    """The images in order, `batch_size` at a time, as float32 tensors of the Keras backend
    (the test-time views are `keras.ops`, so both data paths and both backends score alike)."""
    from keras import ops

    for start in range(0, max(len(images), 1), batch_size):
        yield ops.convert_to_tensor(np.asarray(images[start : start + batch_size], np.float32))


def fixed_sample(count: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of `size` of `count` images drawn with a fixed seed (all when `size` is None
    or not below `count`): the same images for every run, so sampled scores compare across runs."""
    if size is None or size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def shift(images: Any, pixels: int) -> Any:
    """Images (N, H, W, C) moved `pixels` down and right (negative: up and left), the uncovered
    edge filled by reflection, as the training crop's reflect padding fills it."""
    from keras import ops

    pad = abs(pixels)
    padded = ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")
    height, width = images.shape[1], images.shape[2]
    offset = pad - pixels  # content moves by +pixels when the window starts earlier
    return padded[:, offset : offset + height, offset : offset + width, :]


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

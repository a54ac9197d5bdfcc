"""Evaluation numbers against sklearn and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import classification_report, confusion_matrix, log_loss

from cifar_ops.evaluation import calibration_bins, score_probabilities

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
PROBABILITIES = np.array(
    [
        [0.90, 0.05, 0.05],  # 0 -> 0
        [0.60, 0.30, 0.10],  # 0 -> 0
        [0.20, 0.70, 0.10],  # 0 -> 1
        [0.10, 0.80, 0.10],  # 1 -> 1
        [0.50, 0.45, 0.05],  # 1 -> 0
        [0.05, 0.05, 0.90],  # 2 -> 2
        [0.10, 0.20, 0.70],  # 2 -> 2
        [0.30, 0.35, 0.35],  # 2 -> 1 (tie broken towards the first class)
        [0.00, 0.00, 1.00],  # 2 -> 2
        [0.25, 0.40, 0.35],  # 1 -> 1
    ]
)
NAMES = ["cat", "dog", "ship"]


def test_scores_match_sklearn_on_a_known_case() -> None:
    record = score_probabilities(LABELS, PROBABILITIES, NAMES, bins=5)
    predicted = PROBABILITIES.argmax(axis=1)
    assert record.accuracy == pytest.approx(0.7)
    assert record.loss == pytest.approx(log_loss(LABELS, PROBABILITIES), rel=1e-6)
    np.testing.assert_array_equal(record.confusion, confusion_matrix(LABELS, predicted))
    report = classification_report(LABELS, predicted, target_names=NAMES, output_dict=True)
    for metric in record.class_metrics:
        expected = report[metric.class_name]
        assert metric.precision == pytest.approx(expected["precision"])
        assert metric.recall == pytest.approx(expected["recall"])
        assert metric.f1 == pytest.approx(expected["f1-score"])
        assert metric.support == expected["support"]
    # one-vs-rest accuracy of "cat": 2 TP, 1 FP (a dog), 1 FN, 6 TN
    assert record.class_metrics[0].accuracy == pytest.approx(0.8)


def test_one_prediction_row_per_image_with_refs() -> None:
    refs = [f"img{i}.png" for i in range(len(LABELS))]
    record = score_probabilities(LABELS, PROBABILITIES, NAMES, refs=refs)
    rows = record.predictions
    assert rows is not None and len(rows) == 10 and rows.image_ref == refs
    np.testing.assert_array_equal(rows.predicted_class, PROBABILITIES.argmax(axis=1))
    np.testing.assert_allclose(rows.confidence, PROBABILITIES.max(axis=1))
    assert int(rows.correct.sum()) == 7
    assert (
        score_probabilities(LABELS, PROBABILITIES, NAMES, log_predictions=False).predictions is None
    )


def test_expected_calibration_error_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    confidence = np.array([0.95, 0.90, 0.55, 0.60])
    ece, bins = calibration_bins(labels, predicted, confidence, 2)
    # bin (0.5, 1.0] holds all four: accuracy 0.75, mean confidence 0.75 -> no gap
    assert ece == pytest.approx(0.0)
    assert [b.count for b in bins] == [0, 4] and bins[0].accuracy is None
    ece, bins = calibration_bins(labels, predicted, confidence, 4)
    # (0.5, 0.75]: 2 images, both right, confidence 0.575; (0.75, 1]: 1 of 2 right, conf 0.925
    assert [b.count for b in bins] == [0, 0, 2, 2]
    assert ece == pytest.approx(0.5 * abs(1.0 - 0.575) + 0.5 * abs(0.5 - 0.925))
    assert bins[3].mean_confidence == pytest.approx(0.925) and bins[3].accuracy == 0.5


def test_bin_edges_are_closed_on_the_right_and_zero_falls_in_the_first() -> None:
    labels = np.zeros(4, dtype=np.int64)
    _, bins = calibration_bins(labels, labels, np.array([0.0, 0.5, 0.5000001, 1.0]), 2)
    assert [b.count for b in bins] == [2, 2]
    assert (bins[0].lower, bins[0].upper, bins[1].upper) == (0.0, 0.5, 1.0)


def test_a_class_never_predicted_has_zero_precision_not_an_error() -> None:
    labels = np.array([0, 1, 2])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    record = score_probabilities(labels, probabilities, NAMES)
    ship = record.class_metrics[2]
    assert (ship.precision, ship.recall, ship.support) == (0.0, 0.0, 1)
    assert np.isfinite(record.loss)  # a zero probability on the true class is clipped


def _tiny_asymmetric_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))


def test_flip_tta_averages_each_image_with_its_mirror() -> None:
    from cifar_ops.evaluation import predict_split

    model = _tiny_asymmetric_model()
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    plain = predict_split(model, images)
    mirrored = predict_split(model, images[:, :, ::-1, :].copy())
    tta = predict_split(model, images, tta="flip")
    assert not np.allclose(plain, mirrored), "the model is not mirror-symmetric"
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, rtol=1e-6)
    np.testing.assert_allclose(tta.sum(axis=1), 1.0, rtol=1e-6)


def test_flip_translate_tta_adds_one_pixel_shifts_with_reflected_edges() -> None:
    from cifar_ops.evaluation import predict_split

    model = _tiny_asymmetric_model()
    images = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, 2:, 2:, :], padded[:, :4, :4, :]
    # down-right: the top row/left column are the reflection of row/column 1
    np.testing.assert_array_equal(down_right[:, 1:, 1:], images[:, :3, :3])
    np.testing.assert_array_equal(down_right[:, 0, 1:], images[:, 1, :3])

    def flip_avg(x: np.ndarray) -> np.ndarray:
        return (predict_split(model, x) + predict_split(model, x[:, :, ::-1].copy())) / 2

    expected = flip_avg(images) / 2 + (flip_avg(up_left) + flip_avg(down_right)) / 4
    got = predict_split(model, images, tta="flip_translate")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.allclose(got, flip_avg(images)), "the shifts changed nothing"
    with pytest.raises(ValueError, match="flip_translate"):
        predict_split(model, images, tta="rotate")


def test_saved_runs_replay_their_tta_setting() -> None:
    from pathlib import Path

    from cifar_ops.errors import ModelError
    from cifar_ops.inference import SavedModel, tta_of

    def saved(config: dict | None) -> SavedModel:
        return SavedModel(Path("m.keras"), None, ["a"], 32, config)

    assert tta_of(saved({"evaluation": {"tta": "flip_translate"}})) == "flip_translate"
    assert tta_of(saved({"evaluation": {"tta": "none"}})) == "none"
    assert tta_of(saved({"evaluation": {"flip_tta": True}})) == "flip"  # saved before `tta`
    assert tta_of(saved({"evaluation": {"calibration_bins": 15}})) == "none"
    assert tta_of(saved(None)) == "none"
    with pytest.raises(ModelError, match=r"config.json: evaluation.tta is 'rotate', expected"):
        tta_of(saved({"evaluation": {"tta": "rotate"}}))


def test_flip_tta_is_read_as_the_old_name_of_tta() -> None:
    from cifar_ops.config import EvaluationConfig

    assert EvaluationConfig.model_validate({"flip_tta": True}).tta == "flip"
    assert EvaluationConfig.model_validate({"flip_tta": False}).tta == "none"
    with pytest.raises(ValueError, match="old name of evaluation.tta; give only tta"):
        EvaluationConfig.model_validate({"flip_tta": True, "tta": "flip"})

"""Splits (stratified, seeded, capped), the fingerprint, the tf.data pipeline and augmentation."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_ops.config import AugmentationConfig, DataConfig
from cifar_ops.data import Split, load_dataset, make_pipeline
from cifar_ops.data.affine import affine_transforms, apply_transforms
from cifar_ops.data.augment import augment_batch
from cifar_ops.data.pipeline import EpochSetter, epoch_variable
from cifar_ops.errors import ConfigError
from tests.test_data_fixtures import make_folder, write_image

SYNTHETIC = DataConfig(source="synthetic", synthetic_images=600, num_classes=6, image_size=16)


def _ids(split: Split) -> set[bytes]:
    return {image.tobytes() for image in split.images}


def test_validation_is_a_seeded_stratified_carve_and_test_is_fixed() -> None:
    config = SYNTHETIC.model_copy(update={"validation_split": 0.25})
    a, a_again = load_dataset(config, seed=1), load_dataset(config, seed=1)
    b = load_dataset(config.model_copy(update={"synthetic_images": 600}), seed=1)
    assert a.fingerprint == a_again.fingerprint == b.fingerprint
    assert np.bincount(a.validation.labels).tolist() == [20] * 6  # 25% of 80 per class
    assert np.bincount(a.train.labels).tolist() == [60] * 6
    assert np.bincount(a.test.labels).tolist() == [20] * 6
    assert not _ids(a.train) & _ids(a.validation) and not _ids(a.train) & _ids(a.test)


def test_another_seed_changes_validation_but_not_the_held_out_test(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", {"cat": 10, "dog": 10, "frog": 10}, split=None)
    config = DataConfig(source="folder", dir=str(root))
    one, two = load_dataset(config, seed=1), load_dataset(config, seed=2)
    assert one.test.refs == two.test.refs
    assert one.validation.refs != two.validation.refs
    assert one.fingerprint != two.fingerprint


def test_limit_caps_every_split_keeping_class_balance() -> None:
    data = load_dataset(SYNTHETIC.model_copy(update={"limit": 30}), seed=0)
    for split in (data.train, data.validation, data.test):
        assert len(split) == 30
        assert np.bincount(split.labels, minlength=6).tolist() == [5] * 6
    small = load_dataset(SYNTHETIC.model_copy(update={"limit": 4}), seed=0)
    assert len(small.train) == 4  # fewer than the classes: a plain seeded draw


def test_fingerprint_follows_the_pixels(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", {"cat": 6, "dog": 6})
    config = DataConfig(source="folder", dir=str(root))
    before = load_dataset(config, seed=0).fingerprint
    assert load_dataset(config, seed=0).fingerprint == before
    write_image(root / "train" / "dog" / "001.png", (31, 201, 30), size=(15, 8))  # one shade off
    assert load_dataset(config, seed=0).fingerprint != before


def test_evaluation_pipeline_keeps_order_and_pixels() -> None:
    data = load_dataset(SYNTHETIC, seed=0)
    pipeline = make_pipeline(data.test, batch_size=32, training=False, seed=0)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in pipeline], strict=True)
    assert images[0].dtype == np.float32 and images[0].shape == (32, 16, 16, 3)
    assert np.array_equal(np.concatenate(images), data.test.images.astype(np.float32))
    assert np.array_equal(np.concatenate(labels), data.test.labels)


def test_every_pipeline_runs_without_tf_data_autotuning() -> None:
    """An autotuned iterator's teardown at an epoch's end could stall the process (see
    `pipeline.without_autotune`); Keras tears one down after every epoch and validation."""
    data = load_dataset(SYNTHETIC, seed=0)
    made = [
        make_pipeline(data.test, batch_size=32, training=False),
        make_pipeline(data.train, batch_size=32, training=True, epoch=epoch_variable()),
        make_pipeline(
            data.train,
            batch_size=32,
            training=True,
            augmentation=AugmentationConfig(flip=True, crop_padding=2),
            epoch=epoch_variable(),
        ),
    ]
    for pipeline in made:
        assert pipeline.options().autotune.enabled is False


def test_training_pipeline_shuffles_with_the_seed_and_augments_only_when_asked() -> None:
    data = load_dataset(SYNTHETIC, seed=0)
    plain = [
        make_pipeline(data.train, batch_size=64, training=True, seed=s, epoch=epoch_variable())
        for s in (5, 5, 6)
    ]
    firsts = [next(iter(p))[1].numpy() for p in plain]
    assert np.array_equal(firsts[0], firsts[1]) and not np.array_equal(firsts[0], firsts[2])
    seen = np.concatenate([x.numpy() for x, _ in plain[0]])
    assert sorted(_ids(Split(seen.astype(np.uint8), data.train.labels))) == sorted(
        _ids(data.train)
    )  # no augmentation: the same images, reordered

    augmentation = AugmentationConfig(
        flip=True,
        rotation=15,
        width_shift=0.1,
        height_shift=0.1,
        zoom=0.1,
        crop_padding=2,
        cutout=4,
    )
    augmented = make_pipeline(
        data.train,
        batch_size=64,
        training=True,
        augmentation=augmentation,
        seed=5,
        epoch=epoch_variable(),
    )
    images, labels = next(iter(augmented))
    assert images.shape == (64, 16, 16, 3) and images.dtype.name == "float32"
    assert np.array_equal(labels.numpy(), firsts[0])  # augmentation leaves the order alone
    pixels = images.numpy()
    assert pixels.min() >= 0.0 and pixels.max() <= 255.0
    originals = {image.tobytes() for image in data.train.images.astype(np.float32)}
    assert sum(image.tobytes() in originals for image in pixels) == 0
    evaluation = make_pipeline(data.train, batch_size=64, training=False, augmentation=augmentation)
    first = next(iter(evaluation))[0].numpy()
    assert np.array_equal(first, data.train.images[:64].astype(np.float32))


def _training_pipeline(split: Split, augmentation: AugmentationConfig) -> tf.data.Dataset:
    """Epoch 0 of a training pipeline over `split` in batches of 64, seed 0."""
    return make_pipeline(
        split, batch_size=64, training=True, augmentation=augmentation, epoch=epoch_variable()
    )


def test_pad_crop_shifts_each_image_within_the_padding_and_cutout_zeroes_a_square() -> None:
    image = np.arange(8 * 8, dtype=np.uint8).reshape(8, 8, 1).repeat(3, axis=2) * 3 + 10
    split = Split(np.repeat(image[None], 64, axis=0), np.zeros(64, dtype=np.int64))
    crop = AugmentationConfig(crop_padding=2)
    crops = next(iter(_training_pipeline(split, crop)))[0]
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect").astype(np.float32)
    windows = {padded[r : r + 8, c : c + 8].tobytes() for r in range(5) for c in range(5)}
    assert all(c.tobytes() in windows for c in crops.numpy())
    assert len({c.tobytes() for c in crops.numpy()}) > 5  # offsets drawn per image

    cut = AugmentationConfig(cutout=3)
    cuts = next(iter(_training_pipeline(split, cut)))[0]
    zeros = (cuts.numpy() == 0).all(axis=-1).sum(axis=(1, 2))
    assert zeros.max() == 9 and zeros.min() >= 1  # a 3x3 square, clipped at the border


def _transform(image: np.ndarray, **params: object) -> np.ndarray:
    """One image through the fused affine pass with the given parameters (identity otherwise)."""
    values = {"angle": 0.0, "zoom": 1.0, "shift_x": 0.0, "shift_y": 0.0, "flip": False, **params}
    height, width = image.shape[:2]
    transforms = affine_transforms(
        **{name: np.array([value]) for name, value in values.items()}, height=height, width=width
    )
    return apply_transforms(image[None].astype(np.float32), transforms).numpy()[0]


def test_fused_affine_shifts_rotates_and_flips_by_the_given_amounts() -> None:
    image = np.arange(6 * 6 * 3, dtype=np.float32).reshape(6, 6, 3)
    assert np.array_equal(_transform(image), image)  # all parameters neutral: the identity
    shifted = _transform(image, shift_x=2.0, shift_y=-1.0)  # 2 px right, 1 px up
    assert np.array_equal(shifted[:5, 2:], image[1:, :4])
    assert not np.array_equal(shifted, image)
    assert np.array_equal(_transform(image, flip=True), image[:, ::-1])
    quarter = _transform(image, angle=np.pi / 2)  # about the centre, exact up to float error
    assert np.allclose(quarter, np.rot90(image), atol=1e-3)
    # flip then shift, composed in one matrix: the mirror image moved 1 px right
    assert np.array_equal(_transform(image, flip=True, shift_x=1.0)[:, 1:], image[:, :0:-1])


def _ops_traced(augmentation: AugmentationConfig) -> set[str]:
    traced = tf.function(lambda images, seed: augment_batch(images, seed, augmentation))
    graph = traced.get_concrete_function(
        tf.TensorSpec((None, 8, 8, 3), tf.float32), tf.TensorSpec((2,), tf.int64)
    ).graph
    return {op.type for op in graph.get_operations()}


def test_the_resampling_pass_runs_only_when_rotation_shift_or_zoom_is_set() -> None:
    assert "ImageProjectiveTransformV3" not in _ops_traced(AugmentationConfig(flip=True))
    for geometry in ({"rotation": 5.0}, {"width_shift": 0.1}, {"height_shift": 0.1}, {"zoom": 0.1}):
        assert "ImageProjectiveTransformV3" in _ops_traced(AugmentationConfig(**geometry))


def _first_batches(split: Split, augmentation: AugmentationConfig, seed: int) -> list[np.ndarray]:
    """The first batch of two successive epochs of one training pipeline."""
    epoch = epoch_variable()
    pipeline = make_pipeline(
        split,
        batch_size=len(split),
        training=True,
        augmentation=augmentation,
        seed=seed,
        epoch=epoch,
    )
    firsts = []
    for number in range(2):
        epoch.assign(number)
        firsts.append(next(iter(pipeline))[0].numpy())
    return firsts


AUGMENTED = AugmentationConfig(flip=True, rotation=10, width_shift=0.1, crop_padding=2, cutout=3)


def _epoch_batches(pipeline: tf.data.Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in pipeline]


def test_a_training_pass_is_keyed_by_its_epoch_not_by_the_passes_before_it() -> None:
    """A resumed process builds a new pipeline: its epoch k must be the epoch k an uninterrupted
    run saw (tf.data's pass-counting streams started over and replayed epoch 0 instead)."""
    data = load_dataset(SYNTHETIC, seed=0)

    def pipeline(first_epoch: int) -> tuple[tf.data.Dataset, tf.Variable]:
        epoch = epoch_variable(first_epoch)
        built = make_pipeline(
            data.train, batch_size=48, training=True, augmentation=AUGMENTED, seed=7, epoch=epoch
        )
        return built, epoch

    uninterrupted, epoch = pipeline(0)
    passes = []
    for number in range(3):
        epoch.assign(number)
        passes.append(_epoch_batches(uninterrupted))
    resumed, _ = pipeline(2)
    for (pixels, labels), (again_pixels, again_labels) in zip(
        passes[2], _epoch_batches(resumed), strict=True
    ):
        assert np.array_equal(labels, again_labels) and np.array_equal(pixels, again_pixels)
    orders = [np.concatenate([labels for _, labels in batches]) for batches in passes]
    assert len(orders[0]) == len(data.train)  # every image once, the last batch short
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(passes[0][0][0], passes[1][0][0])  # new draws each epoch


def test_a_resumed_fit_trains_on_the_epochs_an_uninterrupted_fit_would() -> None:
    """Through Keras: `fit(initial_epoch=2)` on a fresh pipeline sees epochs 2 and 3 exactly as
    one four-epoch fit does, EpochSetter keying each pass."""
    count = 40
    split = Split(np.zeros((count, 8, 8, 3), np.uint8), np.arange(count))

    def fit_and_record(initial_epoch: int) -> list[np.ndarray]:
        epoch = epoch_variable(initial_epoch)
        pipeline = make_pipeline(split, batch_size=16, training=True, seed=3, epoch=epoch)
        inputs = keras.Input((8, 8, 3))
        model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        seen: list[np.ndarray] = []
        train_step = model.train_step

        def recording(batch):
            pixels, labels = batch
            seen.append(np.asarray(labels))
            return train_step((pixels, tf.zeros((tf.shape(labels)[0], 1))))

        model.train_step = recording
        model.fit(
            pipeline,
            initial_epoch=initial_epoch,
            epochs=4,
            callbacks=[EpochSetter(epoch)],
            shuffle=False,
            verbose=0,
        )
        return [np.concatenate(seen[i : i + 3]) for i in range(0, len(seen), 3)]

    uninterrupted, resumed = fit_and_record(0), fit_and_record(2)
    assert len(uninterrupted) == 4 and len(resumed) == 2
    for order in uninterrupted:
        assert sorted(order) == list(range(count))
    assert not np.array_equal(uninterrupted[2], uninterrupted[3])
    np.testing.assert_array_equal(resumed[0], uninterrupted[2])
    np.testing.assert_array_equal(resumed[1], uninterrupted[3])


def test_augmentation_is_reproducible_per_seed_and_new_each_epoch() -> None:
    image = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    split = Split(np.repeat(image[None], 16, axis=0), np.zeros(16, dtype=np.int64))
    augmentation = AugmentationConfig(
        flip=True, rotation=10, width_shift=0.1, zoom=0.1, crop_padding=2, cutout=3
    )
    first, again, other = (_first_batches(split, augmentation, s) for s in (3, 3, 4))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])  # the next epoch draws anew
    assert len({x.tobytes() for x in first[0]}) == 16  # drawn per image, not per batch
    assert first[0].min() >= 0.0 and first[0].max() <= 255.0


def test_padding_as_large_as_the_image_is_a_config_error() -> None:
    split = Split(np.zeros((4, 8, 8, 3), dtype=np.uint8), np.zeros(4, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"augmentation.crop_padding: got 8: .*below the image"):
        make_pipeline(
            split, batch_size=2, training=True, augmentation=AugmentationConfig(crop_padding=8)
        )


def test_synthetic_data_is_learnable_by_a_tiny_cnn() -> None:
    import keras

    keras.utils.set_random_seed(0)
    data = load_dataset(DataConfig(source="synthetic", synthetic_images=1500), seed=0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    epoch = epoch_variable()
    train = make_pipeline(data.train, batch_size=32, training=True, epoch=epoch)
    model.fit(train, epochs=3, callbacks=[EpochSetter(epoch)], shuffle=False, verbose=0)
    test = make_pipeline(data.test, batch_size=256, training=False)
    _, accuracy = model.evaluate(test, verbose=0)
    assert accuracy > 0.7  # chance is 0.1

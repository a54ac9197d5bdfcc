"""The device data path: augmentation inside the compiled step against NumPy references,
its stream (epochs differ, runs repeat, a resume continues it) and the saved model."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import ndimage

from cifar_ops.checkpoints import RunDirectory
from cifar_ops.config import AugmentationConfig
from cifar_ops.data.device import DeviceTrainer, EpochFeed, StepFeed, epoch_order
from cifar_ops.data.device_augment import (
    augment,
    folds_into_gather,
    gather_augmented,
    gather_folded,
    stateless_uniform,
)
from cifar_ops.data.device_rule import DEVICE_BYTES_LIMIT, resolve_pipeline
from cifar_ops.data.draws import (
    ANGLE,
    CROP_COL,
    CROP_ROW,
    CUT_X,
    CUT_Y,
    DRAWS,
    FLIP,
    SHIFT_X,
    SHIFT_Y,
    ZOOM,
)
from cifar_ops.plan import build_plan
from cifar_ops.runner import execute
from tests.engine_helpers import nested_base_model, preemption_after, tiny_config
from tests.memory_sink import MemorySink

SEED = np.array([1234, 56], "int32")


def batch(count: int = 6, size: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, size, size, 3)).astype("float32")


def draws_for(images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(stateless_uniform((len(images), DRAWS), SEED))


def run_augment(images: np.ndarray, **options: object) -> np.ndarray:
    out = augment(keras.ops.convert_to_tensor(images), SEED, AugmentationConfig(**options))
    return keras.ops.convert_to_numpy(out)


def test_flip_mirrors_the_images_whose_draw_is_below_one_half() -> None:
    images = batch()
    flips = draws_for(images)[:, FLIP] < 0.5
    assert 0 < flips.sum() < len(images)  # the fixed seed mirrors some, not all
    expected = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    np.testing.assert_array_equal(run_augment(images, flip=True), expected)


def test_pad_and_crop_matches_reflect_padding_and_a_numpy_crop() -> None:
    images, padding = batch(), 3
    draws = draws_for(images)
    padded = np.pad(images, [(0, 0), (padding,) * 2, (padding,) * 2, (0, 0)], mode="reflect")
    choices = 2 * padding + 1
    expected = np.stack(
        [
            padded[i, top : top + 12, left : left + 12]
            for i, (top, left) in enumerate(
                zip(
                    np.minimum((draws[:, CROP_ROW] * choices).astype(int), choices - 1),
                    np.minimum((draws[:, CROP_COL] * choices).astype(int), choices - 1),
                    strict=True,
                )
            )
        ]
    )
    np.testing.assert_array_equal(run_augment(images, crop_padding=padding), expected)


def test_cutout_zeroes_one_square_per_image_at_its_drawn_centre() -> None:
    images, size = batch() + 1.0, 4  # no zero pixels before the cutout
    draws = draws_for(images)
    expected = images.copy()
    for i in range(len(images)):
        y = min(int(draws[i, CUT_Y] * 12), 11) - size // 2
        x = min(int(draws[i, CUT_X] * 12), 11) - size // 2
        expected[i, max(y, 0) : y + size, max(x, 0) : x + size] = 0.0
    np.testing.assert_array_equal(run_augment(images, cutout=size), expected)


def test_the_fused_affine_pass_matches_scipy_bilinear_resampling_with_reflection() -> None:
    images = batch()
    options = {"rotation": 20.0, "width_shift": 0.1, "height_shift": 0.1, "zoom": 0.1}
    draws = draws_for(images)
    expected = np.empty_like(images)
    centre = (12 - 1) / 2.0
    for i, d in enumerate(draws):
        angle = (2 * d[ANGLE] - 1) * math.radians(20.0)
        zoom = 1 + (2 * d[ZOOM] - 1) * 0.1
        shift_x, shift_y = (2 * d[SHIFT_X] - 1) * 1.2, (2 * d[SHIFT_Y] - 1) * 1.2
        cos, sin = math.cos(angle), math.sin(angle)
        y, x = np.mgrid[0:12, 0:12].astype("float64")
        # input = centre + R (zoom * (output - centre) - shift)
        u, v = zoom * (x - centre) - shift_x, zoom * (y - centre) - shift_y
        source_x, source_y = centre + cos * u - sin * v, centre + sin * u + cos * v
        for c in range(3):
            expected[i, :, :, c] = ndimage.map_coordinates(
                images[i, :, :, c], [source_y, source_x], order=1, mode="reflect"
            )
    np.testing.assert_allclose(run_augment(images, **options), expected, atol=0.05)


@pytest.mark.parametrize(
    "options",
    [
        {"flip": True},
        {"crop_padding": 3},
        {"flip": True, "crop_padding": 2, "cutout": 4},
        {"cutout": 3},
    ],
)
@pytest.mark.parametrize("alternating", [False, True])
def test_flip_and_crop_read_through_the_gathers_index_give_the_augmented_batch(
    options: dict[str, object], alternating: bool
) -> None:
    """`gather_folded` gives `augment`'s pixels (themselves checked against NumPy above), on
    images taller than wide so rows and columns cannot swap, with draws that mirror some images
    and reach both ends of the crop; `gather_augmented` too, and a compiled step whose batch
    size is unknown when traced (TensorFlow)."""
    rng = np.random.default_rng(4)
    split = rng.integers(0, 256, (20, 9, 7, 3)).astype("uint8")
    index = rng.integers(0, 20, 64).astype("int32")  # images repeat, as across a run's batches
    aug = AugmentationConfig(**options)  # type: ignore[arg-type]
    draws = keras.ops.convert_to_numpy(stateless_uniform((len(index), DRAWS), SEED))
    if aug.flip:
        assert 0 < (draws[:, FLIP] < 0.5).sum() < len(index)
    if aug.crop_padding:
        for column in (CROP_ROW, CROP_COL):
            choices = 2 * aug.crop_padding + 1
            offsets = np.minimum((draws[:, column] * choices).astype(int), choices - 1)
            assert {0, 2 * aug.crop_padding} <= set(offsets.tolist())
    flips = rng.random(len(index)) < 0.5 if alternating else None
    batch = keras.ops.convert_to_tensor(split[index].astype("float32"))
    expected = keras.ops.convert_to_numpy(augment(batch, SEED, aug, flips))
    reads = [gather_folded, gather_augmented]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            lambda i: gather_folded(tf.constant(split), i, SEED, aug, flips),
            input_signature=[tf.TensorSpec([None], tf.int32)],
        )
        reads.append(lambda _split, i, *_: compiled(i))
    for read in reads:
        pixels = read(keras.ops.convert_to_tensor(split), index, SEED, aug, flips)
        assert keras.backend.standardize_dtype(pixels.dtype) == "float32"
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(pixels), expected)


def test_the_affine_pass_is_gathered_then_resampled_and_never_folded() -> None:
    split = np.random.default_rng(5).integers(0, 256, (10, 8, 8, 3)).astype("uint8")
    index = np.array([3, 1, 4, 1], "int32")
    aug = AugmentationConfig(flip=True, crop_padding=1, rotation=10.0)
    assert not folds_into_gather(aug)
    assert folds_into_gather(AugmentationConfig(flip=True, crop_padding=1)) == (
        keras.backend.backend() == "tensorflow"  # JAX's XLA fuses the padded crop: measured
    )
    expected = augment(keras.ops.convert_to_tensor(split[index].astype("float32")), SEED, aug)
    pixels = gather_augmented(keras.ops.convert_to_tensor(split), index, SEED, aug)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pixels), expected)
    with pytest.raises(ValueError, match="use `augment`"):
        gather_folded(keras.ops.convert_to_tensor(split), index, SEED, aug)


def test_the_stream_differs_across_steps_and_epochs_and_repeats_across_runs() -> None:
    images = batch()
    aug = AugmentationConfig(flip=True, crop_padding=2, cutout=3, rotation=5)

    def at(step: int) -> np.ndarray:
        seed = np.array([7, step], "int32")
        return keras.ops.convert_to_numpy(augment(keras.ops.convert_to_tensor(images), seed, aug))

    np.testing.assert_array_equal(at(3), at(3))
    assert not np.allclose(at(3), at(4))
    labels = np.arange(50) % 5
    feed = StepFeed(labels, batch_size=16, seed=7)
    assert len(feed) == 4  # one epoch per pass
    first = feed[0][0]
    epoch_one = np.concatenate([feed[k][0]["index"] for k in range(4)])
    assert sorted(epoch_one) == list(range(50))  # each image once per epoch
    feed.epoch = 1  # what EpochFeed does at the next epoch's start
    second = feed[0][0]
    assert first["step"][0] == 0 and second["step"][0] == 4 and second["epoch"][0] == 1
    assert not np.array_equal(first["index"], second["index"])  # epochs reshuffle
    resumed = StepFeed(labels, batch_size=16, seed=7, epoch=1)
    np.testing.assert_array_equal(resumed[0][0]["index"], second["index"])
    np.testing.assert_array_equal(epoch_order(7, 1, 50), epoch_order(7, 1, 50))


tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the tf.data feeds are TensorFlow's"
)


class CountingFeed(StepFeed):
    """A StepFeed that counts the batches read from it in Python."""

    reads = 0

    def __getitem__(self, position: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        CountingFeed.reads += 1
        return super().__getitem__(position)


@tensorflow_only
def test_the_tf_feed_yields_the_step_feeds_batches_for_the_epoch_each_pass_starts_in() -> None:
    from cifar_ops.data.device import tf_step_feed

    feed = StepFeed(np.arange(50) % 5, batch_size=16, seed=7)
    dataset = tf_step_feed(feed)
    assert int(dataset.cardinality()) == len(feed) == 4  # grouped steps end on the epoch
    assert dataset.options().autotune.enabled is False  # no autotuner to wait for (see there)
    for epoch in (0, 1, 3):
        feed.epoch = epoch  # EpochFeed, before Keras starts the pass
        got = list(dataset.as_numpy_iterator())
        want = [feed[k] for k in range(len(feed))]
        assert len(got) == len(want)
        for (inputs, labels), (expected, expected_labels) in zip(got, want, strict=True):
            for key, value in expected.items():
                assert inputs[key].dtype == value.dtype
                np.testing.assert_array_equal(inputs[key], value)
            assert labels.dtype == expected_labels.dtype
            np.testing.assert_array_equal(labels, expected_labels)


@tensorflow_only
def test_the_trainer_fits_a_step_feed_through_tf_data_to_the_python_feeds_weights() -> None:
    from cifar_ops.data.device import ArrayBatches
    from cifar_ops.data.splits import Split

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (40, 8, 8, 3)).astype("uint8"), rng.integers(0, 2, 40))

    def fitted(through_keras_pydataset: bool) -> list[np.ndarray]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")]
        )
        trainer = DeviceTrainer(model, split.images, AugmentationConfig(flip=True), seed=3)
        trainer.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=2)
        feed = CountingFeed(split.labels, batch_size=16, seed=3)
        fit = keras.Model.fit if through_keras_pydataset else DeviceTrainer.fit
        history = fit(
            trainer,
            feed,
            validation_data=ArrayBatches(split, 16),
            epochs=3,
            callbacks=[EpochFeed(feed)],
            verbose=0,
            shuffle=False,  # as the product fits: the feed orders each epoch
        )
        assert len(history.history["val_loss"]) == 3
        return model.get_weights()

    CountingFeed.reads = 0
    tf_weights = fitted(through_keras_pydataset=False)
    assert CountingFeed.reads == 0  # no Python call per step
    python_weights = fitted(through_keras_pydataset=True)
    assert CountingFeed.reads > 0
    for ours, theirs in zip(tf_weights, python_weights, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_the_alternating_flip_mirrors_each_image_on_every_other_epoch() -> None:
    images = np.random.default_rng(1).integers(0, 256, (8, 6, 6, 3)).astype("uint8")
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Identity()])
    trainer = DeviceTrainer(model, images, AugmentationConfig(flip="alternating"), seed=3)
    index = np.arange(8, dtype="int32")

    def seen(epoch: int) -> np.ndarray:
        inputs = {"index": index, "step": np.full(8, epoch, "int32"), "epoch": np.full(8, epoch)}
        return keras.ops.convert_to_numpy(trainer(inputs, training=True))

    mirrored = [np.all(seen(e) == images[:, :, ::-1], axis=(1, 2, 3)) for e in range(3)]
    assert 0 < mirrored[0].sum() < 8
    np.testing.assert_array_equal(mirrored[1], ~mirrored[0])
    np.testing.assert_array_equal(mirrored[2], mirrored[0])


def device_config(pipeline: str = "device", **train: object):
    return tiny_config(
        data={"pipeline": pipeline},
        augmentation={"flip": True, "crop_padding": 2, "cutout": 4, "rotation": 10},
        train={"epochs": 3, **train},
    )


@pytest.mark.parametrize("pipeline", ["device", "host"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(pipeline: str) -> None:
    """Both data paths key each epoch's order and draws by (seed, epoch): the host path's
    tf.data streams once restarted with the resuming process and replayed epoch 1 as epoch 3."""
    if pipeline == "host" and keras.backend.backend() != "tensorflow":
        pytest.skip("the host (tf.data) path runs on TensorFlow only")
    sink = MemorySink()
    config = device_config(pipeline)
    whole = execute(config, sink=sink, run_id=f"{pipeline}-whole")
    assert whole.status == "succeeded"
    assert sink.finishes[f"{pipeline}-whole"].test_accuracy > 0.5  # chance is 0.25
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=sink, run_id=f"{pipeline}-cut", callbacks=[preemption_after(2)])
    resumed = execute(config, sink=sink, run_id=f"{pipeline}-cut")
    assert [r.epoch for r in sink.history(f"{pipeline}-cut")] == [1, 2, 3]
    losses = [r.loss for r in sink.history(f"{pipeline}-whole")]
    assert [r.loss for r in sink.history(f"{pipeline}-cut")] == pytest.approx(losses, rel=1e-5)
    one = keras.models.load_model(whole.model_path)
    two = keras.models.load_model(resumed.model_path)
    for a, b in zip(one.get_weights(), two.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the saved models are the plain model: no trainer, no copy of the split, no augmentation
    assert one.name == "simple_cnn" and all("device" not in layer.name for layer in one.layers)
    best = keras.models.load_model(RunDirectory(f"{pipeline}-whole").best_model_path)
    assert best.count_params() == one.count_params()


def test_the_pipeline_key_resolves_and_keeps_older_config_hashes() -> None:
    assert resolve_pipeline("auto", DEVICE_BYTES_LIMIT) == "device"
    assert resolve_pipeline("auto", DEVICE_BYTES_LIMIT + 1) == "host"
    assert resolve_pipeline("host", 1) == "host"
    host, device = tiny_config(), tiny_config(data={"pipeline": "device"})
    assert host.config_hash() == tiny_config(data={"pipeline": "host"}).config_hash()
    assert "pipeline" not in host.model_dump_json(exclude={"data": {"pipeline"}})
    assert device.config_hash() != host.config_hash()
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()])
    plan = build_plan(tiny_config(data={"pipeline": "auto"}), model, train_images=100)
    assert plan.pipeline == "device"


def test_flip_crop_and_cutout_compile_into_an_xla_step_and_tf_refuses_xla_with_geometry() -> None:
    from cifar_ops.data.device import device_inputs
    from cifar_ops.data.splits import Split
    from cifar_ops.errors import ConfigError

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (64, 8, 8, 3)).astype("uint8"), rng.integers(0, 2, 64))
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    aug = AugmentationConfig(flip="alternating", crop_padding=2, cutout=3)
    trainer, feed, validation = device_inputs(
        model,
        split,
        split,
        augmentation=aug,
        batch_size=16,
        seed=1,
        jit_compile=True,
    )
    history = trainer.fit(
        feed, validation_data=validation, epochs=2, callbacks=[EpochFeed(feed)], verbose=0
    )
    assert all(np.isfinite(history.history["loss"]))
    geometry = tiny_config(
        data={"pipeline": "device"}, augmentation={"rotation": 10}, train={"xla": True}
    )
    flat = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()])
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ConfigError, match="train.xla: .*no XLA kernel"):
            build_plan(geometry, flat, train_images=100)
    else:
        assert build_plan(geometry, flat, train_images=100).pipeline == "device"


def test_a_crop_padding_that_does_not_fit_the_images_is_a_config_error() -> None:
    from cifar_ops.errors import ConfigError

    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Identity()])
    images = np.zeros((4, 6, 6, 3), "uint8")
    with pytest.raises(ConfigError, match="augmentation.crop_padding"):
        DeviceTrainer(model, images, AugmentationConfig(crop_padding=6), seed=0)


def test_two_phases_on_the_device_path_resume_inside_the_fine_tune_phase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cifar_ops.runner.build_model", nested_base_model)
    fine_tune = {"epochs": 2, "learning_rate": 1e-4, "unfreeze_layers": 2}
    config = tiny_config(
        data={"pipeline": "device"},
        augmentation={"flip": True},
        train={"epochs": 2, "fine_tune": fine_tune},
    )
    sink = MemorySink()
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=sink, run_id="device-phases", callbacks=[preemption_after(3)])
    outcome = execute(config, sink=sink, run_id="device-phases")
    history = sink.history("device-phases")
    assert [(r.epoch, r.phase) for r in history] == [
        (1, "train"),
        (2, "train"),
        (3, "fine_tune"),
        (4, "fine_tune"),
    ]
    assert [r.learning_rate for r in history[2:]] == pytest.approx([1e-4, 1e-4])
    model = keras.saving.load_model(outcome.model_path, compile=False)
    trainable = {layer.name: layer.trainable for layer in model.get_layer("base").layers}
    assert trainable == {"conv1": False, "bn1": False, "conv2": True, "pool": True}


def test_a_keras_backend_the_engine_does_not_support_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cifar_ops.errors import ConfigError

    monkeypatch.setattr("cifar_ops.backend.backend", lambda: "torch")
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()])
    with pytest.raises(ConfigError, match="KERAS_BACKEND='torch' is not supported: use one of"):
        build_plan(tiny_config(data={"pipeline": "device"}), model, train_images=100)


@pytest.mark.parametrize("pipeline", ["device", "host"])
def test_grouped_steps_train_the_same_epochs_and_weights_as_single_steps(pipeline: str) -> None:
    """10 steps an epoch in groups of 4 (4, 4, 2): a last, shorter group ends each epoch."""
    if pipeline == "host" and keras.backend.backend() != "tensorflow":
        pytest.skip("the host (tf.data) path runs on TensorFlow only")
    sink = MemorySink()
    calls: dict[int, list[int]] = {}

    class BatchCalls(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            calls.setdefault(self.model.steps_per_execution, []).append(batch)

    def run(group: int) -> tuple[list[float], list[np.ndarray], str]:
        config = tiny_config(
            data={"pipeline": pipeline},
            augmentation={"flip": True, "crop_padding": 2},
            train={"epochs": 2, "steps_per_execution": group},
        )
        run_id = f"{pipeline}-group-{group}"
        outcome = execute(config, sink=sink, run_id=run_id, callbacks=[BatchCalls()])
        assert outcome.status == "succeeded"
        model = keras.models.load_model(outcome.model_path)
        return [r.loss for r in sink.history(run_id)], model.get_weights(), config.config_hash()

    single, grouped = run(1), run(4)
    assert calls[1] == list(range(10)) * 2
    assert calls[4] == [3, 7, 11] * 2  # Keras names each group by its last index
    assert len(grouped[0]) == 2
    assert grouped[0] == pytest.approx(single[0], rel=1e-5)
    for a, b in zip(single[1], grouped[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert grouped[2] == single[2]  # grouping computes the same run: the same resume key


def test_grouped_steps_are_refused_with_callbacks_that_act_after_every_step() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="train.lookahead must act after every step"):
        tiny_config(train={"steps_per_execution": 8, "lookahead": {}})
    fast = {"name": "fast", "whiten": True, "whiten_bias_epochs": 3}
    with pytest.raises(ValidationError, match="model.whiten_bias_epochs must act after every"):
        tiny_config(model=fast, train={"steps_per_execution": 8})
    both = "train.lookahead and model.whiten_bias_epochs must act after every step"
    with pytest.raises(ValidationError, match=both):
        tiny_config(model=fast, train={"steps_per_execution": 2, "lookahead": {}})
    tiny_config(model=fast, train={"steps_per_execution": 1, "lookahead": {}})  # one step: fine

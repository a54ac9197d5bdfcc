"""airbench's training switches: lookahead, alternating flip, whitening-bias freeze, BN epsilon,
one-cycle end rate, logit-averaged TTA, a sampled train score; and that none of them changes the
hash of a config that does not set it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from cifar_ops.checkpoints import RunDirectory
from cifar_ops.config import AugmentationConfig, FastModel, ScheduleConfig, load_run_config
from cifar_ops.data.pipeline import EpochSetter, epoch_variable, make_pipeline
from cifar_ops.data.splits import Split
from cifar_ops.evaluation import fixed_sample, predict_split
from cifar_ops.models.fast import build_fast
from cifar_ops.models.whitening import PatchWhitening
from cifar_ops.runner import execute
from cifar_ops.schedules import learning_rate_for, rate_at
from cifar_ops.weight_averaging import FreezeAfter, Lookahead, lookahead_decay
from tests.engine_helpers import preemption_after, tiny_config
from tests.memory_sink import MemorySink

REPO = Path(__file__).resolve().parents[1]
# Hashes of configs as recorded before these switches existed: a run started then must resume.
RECORDED_HASHES = {
    "tiny": "d41a810d02758dbc3a3db700386814cb760baa2ba45c201e62aedd1ac361133d",
    "jobs/configs/fast.yaml": "615e59a81084c84d0bc2ebdd505900de5705ae5186d3be27779d939281bc0b42",
    "jobs/configs/fast_gpu.yaml": (
        "a1dea1c2c06f9caa9b834745777b11ad3088cc15607de9f8cc3b00dc1e09f272"
    ),
}

FAST = {
    "name": "fast",
    "widths": [8, 16, 16],
    "whiten": True,
    "dirac_init": True,
}
FAST_SGD = {"name": "sgd", "learning_rate": 0.05, "momentum": 0.85, "nesterov": True}


class Snapshots(keras.callbacks.Callback):
    """The whitening bias at each epoch's end."""

    def __init__(self) -> None:
        super().__init__()
        self.bias: list[np.ndarray] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        whitening = next(x for x in self.model.layers if isinstance(x, PatchWhitening))
        self.bias.append(keras.ops.convert_to_numpy(whitening.bias).copy())


def test_configs_that_do_not_set_a_new_key_keep_their_recorded_hash() -> None:
    assert tiny_config().config_hash() == RECORDED_HASHES["tiny"]
    for path in ("jobs/configs/fast.yaml", "jobs/configs/fast_gpu.yaml"):
        config = load_run_config(REPO / path)
        expected = RECORDED_HASHES[path]
        if config.evaluation.train_sample is not None:  # set on purpose in the shipped recipes
            config = config.model_copy(
                update={"evaluation": config.evaluation.model_copy(update={"train_sample": None})}
            )
        assert config.config_hash() == expected
    spelled_out = tiny_config(
        schedule={"end_fraction": None},
        evaluation={"tta_average": "probabilities", "train_sample": None},
        train={"lookahead": None, "steps_per_execution": 1},
    )
    assert spelled_out.config_hash() == RECORDED_HASHES["tiny"]
    grouped = tiny_config(train={"steps_per_execution": 32})  # the same steps in fewer calls
    assert grouped.config_hash() == RECORDED_HASHES["tiny"]
    elsewhere = tiny_config(data={"archive": "s3://mirror/cifar-10-python.tar.gz"})
    assert elsewhere.config_hash() == RECORDED_HASHES["tiny"]  # where from, not what
    for changed in (
        tiny_config(schedule={"end_fraction": 0.07}),
        tiny_config(evaluation={"tta_average": "logits"}),
        tiny_config(evaluation={"train_sample": 100}),
        tiny_config(train={"lookahead": {}}),
        tiny_config(augmentation={"flip": "alternating"}),
        tiny_config(optimizer={"weight_decay": 0.01, "decay_shifts": True}),
    ):
        assert changed.config_hash() != RECORDED_HASHES["tiny"]


def test_the_switches_refuse_bad_values() -> None:
    with pytest.raises(ValidationError, match="whiten_bias_epochs"):
        FastModel(name="fast", whiten_bias_epochs=3)
    with pytest.raises(ValidationError, match="flip"):
        AugmentationConfig(flip="sometimes")
    with pytest.raises(ValidationError, match="lookahead"):
        tiny_config(train={"lookahead": {"every": 0}})
    with pytest.raises(ValidationError, match="batch_norm_epsilon"):
        FastModel(name="fast", batch_norm_epsilon=0)
    with pytest.raises(ValidationError, match="tta_average"):
        tiny_config(evaluation={"tta_average": "votes"})


def test_one_cycle_end_fraction_sets_the_last_rate() -> None:
    schedule = ScheduleConfig(name="one_cycle", peak_fraction=0.23, start_fraction=0.2)
    ended = schedule.model_copy(update={"end_fraction": 0.07})
    for config, last in ((schedule, 1.5 * 0.2 / 1e4), (ended, 1.5 * 0.07)):
        rate = learning_rate_for(config, 1.5, epochs=10, steps_per_epoch=10)
        assert rate_at(rate, 100) == pytest.approx(last, abs=1e-6)
        assert rate_at(rate, 0) == pytest.approx(0.3)
    rate = learning_rate_for(ended, 1.5, epochs=10, steps_per_epoch=10)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(rate))
    assert rate_at(restored, 100) == pytest.approx(1.5 * 0.07, abs=1e-6)


def test_fast_model_batch_norm_takes_the_configured_epsilon() -> None:
    model = build_fast(
        FastModel(name="fast", widths=[8, 8, 8], batch_norm_epsilon=1e-12),
        input_shape=(16, 16, 3),
        num_classes=4,
    )
    norms = [x for x in model.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert norms and {x.epsilon for x in norms} == {1e-12}


def _flip_pattern(dataset: tf.data.Dataset, count: int) -> list[int]:
    """Per image (label = index), whether its white left column ended up on the right."""
    flipped = {}
    for images, labels in dataset:
        for image, label in zip(images.numpy(), labels.numpy(), strict=True):
            flipped[int(label)] = int(image[0, -1, 0] == 255)
    return [flipped[i] for i in range(count)]


def test_alternating_flip_toggles_each_image_every_epoch_and_resumes_on_parity() -> None:
    count = 64
    images = np.zeros((count, 8, 8, 3), np.uint8)
    images[:, :, 0, :] = 255
    split = Split(images, np.arange(count))
    augmentation = AugmentationConfig(flip="alternating", crop_padding=0)
    epoch = epoch_variable()

    def pipeline(seed: int) -> tf.data.Dataset:
        return make_pipeline(
            split, batch_size=16, training=True, augmentation=augmentation, seed=seed, epoch=epoch
        )

    dataset = pipeline(3)
    epochs = []
    for number in range(4):
        epoch.assign(number)
        epochs.append(np.array(_flip_pattern(dataset, count)))
    assert 16 < epochs[0].sum() < 48  # about half mirrored in the first epoch
    assert np.array_equal(epochs[1], 1 - epochs[0])
    assert np.array_equal(epochs[2], epochs[0]) and np.array_equal(epochs[3], epochs[1])
    epoch.assign(0)
    assert np.array_equal(_flip_pattern(pipeline(3), count), epochs[0])  # reproducible
    assert not np.array_equal(_flip_pattern(pipeline(4), count), epochs[0])
    epoch.assign(7)  # a run resumed at an odd epoch
    assert np.array_equal(_flip_pattern(pipeline(3), count), epochs[1])
    with pytest.raises(ValueError, match="epoch variable"):
        make_pipeline(split, batch_size=16, training=True, augmentation=augmentation)


def test_keras_fit_sees_the_flip_of_each_epoch_it_trains() -> None:
    """EpochSetter runs before Keras starts each epoch's pass, resumed epochs included."""
    count = 32
    images = np.zeros((count, 8, 8, 3), np.uint8)
    images[:, :, 0, :] = 255
    split = Split(images, np.arange(count))
    epoch = epoch_variable()
    dataset = make_pipeline(
        split,
        batch_size=16,
        training=True,
        augmentation=AugmentationConfig(flip="alternating"),
        seed=1,
        epoch=epoch,
    )
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    seen: list[dict[int, int]] = []
    train_step = model.train_step

    def recording(data):
        pixels, labels = data
        if not seen or len(seen[-1]) == count:
            seen.append({})
        for image, label in zip(np.asarray(pixels), np.asarray(labels), strict=True):
            seen[-1][int(label)] = int(image[0, -1, 0] == 255)
        return train_step((pixels, tf.zeros((tf.shape(labels)[0], 2))))

    model.train_step = recording
    model.fit(dataset, epochs=3, callbacks=[EpochSetter(epoch)], shuffle=False, verbose=0)
    model.fit(
        dataset, epochs=5, initial_epoch=3, callbacks=[EpochSetter(epoch)], shuffle=False, verbose=0
    )
    patterns = [np.array([flips[i] for i in range(count)]) for flips in seen]
    assert len(patterns) == 5
    for number, pattern in enumerate(patterns):
        expected = patterns[0] if number % 2 == 0 else 1 - patterns[0]
        assert np.array_equal(pattern, expected), number


def test_lookahead_moves_slow_weights_towards_the_trained_ones_then_restarts_from_them() -> None:
    assert lookahead_decay(0, 100, 5, 0.95) == 0.0
    assert lookahead_decay(100, 100, 5, 0.95) == pytest.approx(0.95**5)
    assert lookahead_decay(50, 100, 5, 0.95) == pytest.approx(0.95**5 / 8)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    lookahead = Lookahead(every=5, decay_per_step=0.9, total_steps=10, steps_per_epoch=10)
    lookahead.set_model(model)
    lookahead.on_train_begin()
    start = [w.copy() for w in model.get_weights()]
    model.optimizer.iterations.assign(10)
    trained = [w + 1.0 for w in start]
    model.set_weights(trained)
    lookahead.on_train_batch_end(9)  # the epoch's last step: a sync
    decay = 0.9**10
    for now, before, fast in zip(model.get_weights(), start, trained, strict=True):
        np.testing.assert_allclose(now, decay * before + (1 - decay) * fast, rtol=1e-6)
    assert lookahead.last_sync == 10
    synced = [w.copy() for w in model.get_weights()]
    model.optimizer.iterations.assign(12)
    model.set_weights([w + 5.0 for w in synced])
    lookahead.on_train_batch_end(1)  # neither a multiple of 5 nor the epoch's end: no sync
    np.testing.assert_allclose(model.get_weights()[0], synced[0] + 5.0)


def test_freeze_after_keeps_variables_from_that_epoch_on() -> None:
    variable = keras.Variable(np.zeros(3, np.float32))
    freeze = FreezeAfter([variable], epochs=2)
    for epoch in range(4):
        freeze.on_epoch_begin(epoch)
        variable.assign(variable + 1.0)  # a training step
        freeze.on_train_batch_end(0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), [2.0, 2.0, 2.0])


def _airbench_config(**train):
    return tiny_config(
        model={**FAST, "whiten_bias_epochs": 2, "batch_norm_momentum": 0.9},
        optimizer={**FAST_SGD, "weight_decay": 0.005, "decay_shifts": True},
        schedule={"name": "one_cycle", "peak_fraction": 0.25, "end_fraction": 0.07},
        augmentation={"flip": "alternating", "crop_padding": 2},
        train={"epochs": 4, "batch_size": 64, "lookahead": {"every": 2}, **train},
        evaluation={"tta": "flip", "tta_average": "logits", "train_sample": 100},
    )


def test_a_run_with_every_switch_resumes_from_its_checkpoint_with_the_slow_weights() -> None:
    config = _airbench_config()
    sink = MemorySink()
    first = Snapshots()
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=sink, run_id="airbench", callbacks=[first, preemption_after(3)])
    state = RunDirectory("airbench").load_state()
    assert state is not None and state.epochs_done == 3
    assert not np.array_equal(first.bias[0], first.bias[1])  # trained in epochs 1 and 2
    np.testing.assert_array_equal(first.bias[1], first.bias[2])  # then fixed

    second = Snapshots()
    outcome = execute(config, sink=sink, run_id="airbench", callbacks=[second])
    assert outcome.status == "succeeded"
    assert [r.epoch for r in sink.history("airbench")] == [1, 2, 3, 4]
    np.testing.assert_array_equal(second.bias[0], first.bias[2])  # still fixed after resume
    finish = sink.finishes["airbench"]
    assert finish.reason is not None and "sample of 100 of" in finish.reason
    assert finish.train_accuracy is not None and finish.test_accuracy is not None


def test_lookahead_leaves_the_epoch_with_the_slow_weights(monkeypatch) -> None:
    """The model at an epoch's end (validated, checkpointed) is the slow copy: no extra state."""
    seen: list[bool] = []
    original = Lookahead.on_train_batch_end

    def checked(self, batch, logs=None):
        original(self, batch, logs)
        if (batch + 1) % self.steps_per_epoch == 0:
            weights = [keras.ops.convert_to_numpy(v) for v in self._variables()]
            seen.append(all(np.array_equal(w, s) for w, s in zip(weights, self.slow, strict=True)))

    monkeypatch.setattr(Lookahead, "on_train_batch_end", checked)
    config = _airbench_config(epochs=2)
    outcome = execute(config, sink=MemorySink())
    assert outcome.status == "succeeded" and seen == [True, True]


def test_logit_averaged_tta_is_the_softmax_of_the_mean_log_probability() -> None:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4, 4, 3))
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    images = np.random.default_rng(0).integers(0, 255, (6, 4, 4, 3)).astype(np.uint8)
    plain = np.asarray(model.predict(images.astype(np.float32), verbose=0), np.float64)
    mirror = np.asarray(model.predict(images[:, :, ::-1].astype(np.float32), verbose=0), np.float64)
    mean_log = (np.log(plain) + np.log(mirror)) / 2
    expected = np.exp(mean_log) / np.exp(mean_log).sum(axis=1, keepdims=True)
    got = predict_split(model, images, tta="flip", average="logits")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(predict_split(model, images, tta="flip"), (plain + mirror) / 2)
    assert not np.allclose(got, (plain + mirror) / 2)
    with pytest.raises(ValueError, match="average"):
        predict_split(model, images, tta="flip", average="median")


def test_fixed_sample_is_the_same_subset_every_time() -> None:
    first = fixed_sample(1000, 50)
    assert len(first) == 50 == len(set(first)) and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(first, fixed_sample(1000, 50))
    np.testing.assert_array_equal(fixed_sample(30, 50), np.arange(30))
    np.testing.assert_array_equal(fixed_sample(30, None), np.arange(30))


def test_saved_runs_replay_their_tta_average() -> None:
    from cifar_ops.errors import ModelError
    from cifar_ops.inference import SavedModel, tta_average_of

    def saved(config: dict | None) -> SavedModel:
        return SavedModel(Path("m.keras"), None, ["a"], 32, config)

    assert tta_average_of(saved({"evaluation": {"tta_average": "logits"}})) == "logits"
    assert tta_average_of(saved({"evaluation": {"tta": "flip"}})) == "probabilities"  # older
    assert tta_average_of(saved(None)) == "probabilities"
    with pytest.raises(ModelError, match=r"evaluation.tta_average is 'votes', expected"):
        tta_average_of(saved({"evaluation": {"tta_average": "votes"}}))


def test_torch_init_draws_random_filters_and_the_head_within_one_over_root_fan_in() -> None:
    def built(init: str) -> keras.Model:
        keras.utils.set_random_seed(0)
        return build_fast(
            FastModel(name="fast", widths=[8, 32, 32], dirac_init=True, init=init),
            input_shape=(16, 16, 3),
            num_classes=4,
        )

    torch, glorot = built("torch"), built("glorot")
    head = keras.ops.convert_to_numpy(torch.get_layer("head").kernel)
    assert np.abs(head).max() <= 1 / np.sqrt(32)
    wide = keras.ops.convert_to_numpy(torch.get_layer("group2_conv1").kernel)  # 8 -> 32, 3x3
    assert wide[1, 1, np.arange(8), np.arange(8)].tolist() == [1.0] * 8  # dirac part kept
    assert np.abs(wide[..., 8:]).max() <= 1 / np.sqrt(8 * 9)
    glorot_wide = keras.ops.convert_to_numpy(glorot.get_layer("group2_conv1").kernel)
    assert np.abs(glorot_wide[..., 8:]).max() > 1 / np.sqrt(8 * 9)  # glorot's wider limit
    initializer = torch.get_layer("group2_conv1").kernel_initializer
    assert type(initializer).from_config(initializer.get_config()).init == "torch"

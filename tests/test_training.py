"""Training engine: learning, resume after preemption, seeds, schedules, callbacks, phases."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from cifar_ops import precision, training
from cifar_ops.callbacks import ResumableEarlyStopping, ResumablePlateau
from cifar_ops.checkpoints import RunDirectory
from cifar_ops.config import OptimizerConfig, ScheduleConfig
from cifar_ops.errors import ConfigError
from cifar_ops.losses import SparseSmoothedCrossentropy
from cifar_ops.optimizers import build_optimizer
from cifar_ops.plan import build_plan
from cifar_ops.runner import execute
from cifar_ops.schedules import learning_rate_for, rate_at
from tests.engine_helpers import nested_base_model, preemption_after, tiny_config
from tests.memory_sink import MemorySink


def test_a_short_run_learns_well_above_chance_and_the_same_seed_repeats_it() -> None:
    sink = MemorySink()
    outcome = execute(tiny_config(), sink=sink)
    assert outcome.status == "succeeded"
    finish = sink.finishes[outcome.run_id]
    assert finish.test_accuracy is not None and finish.test_accuracy > 0.7  # chance is 0.25
    assert finish.overfitting_gap == pytest.approx(finish.train_accuracy - finish.test_accuracy)
    history = sink.history(outcome.run_id)
    assert [r.epoch for r in history] == [1, 2, 3]
    assert all(r.images_per_second > 0 and r.seconds > 0 for r in history)
    start = sink.starts[0]
    assert start.param_count == finish.param_count > 0
    assert start.dataset_fingerprint and len(start.run_id) == 32
    assert start.hardware and start.hardware.endswith(", float32")  # the dtype policy it used
    assert outcome.model_path is not None and outcome.model_path.exists()
    assert (outcome.model_path.parent / "best.keras").exists()
    assert sink.evaluations[outcome.run_id].accuracy == finish.test_accuracy

    again = execute(tiny_config(), sink=sink)
    assert [r.val_loss for r in sink.history(again.run_id)] == [r.val_loss for r in history]
    assert again.finish.test_accuracy == finish.test_accuracy


def test_resume_after_preemption_continues_at_the_next_epoch() -> None:
    stages = [{"epochs": 2, "learning_rate": 0.01}, {"epochs": 3, "learning_rate": 0.001}]
    config = tiny_config(
        train={"epochs": 5, "early_stopping": {"patience": 4}},
        schedule={"name": "piecewise", "stages": stages},
    )
    sink = MemorySink()
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=sink, run_id="resumable", callbacks=[preemption_after(2)])
    assert sink.finishes["resumable"].status == "preempted"
    state = RunDirectory("resumable").load_state()
    assert state is not None and state.epochs_done == 2
    assert set(state.callbacks) == {"best_model", "early_stopping"}

    outcome = execute(config, sink=sink, run_id="resumable")
    assert outcome.status == "succeeded"
    writes = [epoch for run, epoch in sink.epoch_writes if run == "resumable"]
    assert writes == [1, 2, 3, 4, 5]  # the second process began at epoch 3: nothing redone
    history = sink.history("resumable")
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]
    # the stage schedule follows the restored optimizer step counter
    assert [r.learning_rate for r in history] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.001])
    assert len(sink.starts) == 2 and {s.run_id for s in sink.starts} == {"resumable"}


def test_resume_with_another_config_is_refused() -> None:
    RunDirectory("r1").create(tiny_config(), ["a", "b", "c", "d"])
    sink = MemorySink()
    changed = tiny_config(optimizer={"learning_rate": 0.01})
    with pytest.raises(ConfigError, match="another config|new --run-id"):
        execute(changed, sink=sink, run_id="r1")
    assert sink.starts == []


def test_cosine_warms_up_linearly_then_decays_to_the_floor() -> None:
    schedule = ScheduleConfig(name="cosine", warmup_epochs=1, min_learning_rate=0.001)
    rate = learning_rate_for(schedule, 0.1, epochs=5, steps_per_epoch=10)
    curve = [rate_at(rate, step) for step in range(51)]
    assert curve[0] == pytest.approx(0.1 / 25)
    assert np.all(np.diff(curve[:11]) > 0) and curve[10] == pytest.approx(0.1)
    assert np.all(np.diff(curve[10:]) <= 1e-9)
    assert curve[50] == pytest.approx(0.001, rel=1e-3)
    assert curve[30] == pytest.approx(0.001 + 0.099 * 0.5, rel=1e-3)  # halfway: the mean


def test_one_cycle_rises_to_the_peak_then_falls_near_zero() -> None:
    schedule = ScheduleConfig(name="one_cycle", peak_fraction=0.25)
    rate = learning_rate_for(schedule, 0.2, epochs=4, steps_per_epoch=25)
    curve = np.array([rate_at(rate, step) for step in range(101)])
    assert curve[0] == pytest.approx(0.2 / 25)
    assert int(curve.argmax()) == 25 and curve.max() == pytest.approx(0.2)
    assert curve[100] == pytest.approx(0.2 / 25 / 1e4, abs=1e-7)
    assert curve[62] == pytest.approx(0.2 + (curve[100] - 0.2) * 37 / 75, rel=1e-4)


def test_one_cycle_start_fraction_sets_the_first_rate() -> None:
    schedule = ScheduleConfig(name="one_cycle", peak_fraction=0.2, start_fraction=0.2)
    rate = learning_rate_for(schedule, 0.25, epochs=5, steps_per_epoch=10)
    curve = np.array([rate_at(rate, step) for step in range(51)])
    assert curve[0] == pytest.approx(0.05)
    assert int(curve.argmax()) == 10 and curve.max() == pytest.approx(0.25)
    assert curve[50] == pytest.approx(0.05 / 1e4, abs=1e-7)


def test_a_piecewise_schedule_of_one_stage_is_that_rate_throughout() -> None:
    schedule = ScheduleConfig(name="piecewise", stages=[{"epochs": 1, "learning_rate": 0.0003}])
    rate = learning_rate_for(schedule, 0.1, epochs=1, steps_per_epoch=4)
    assert [rate_at(rate, step) for step in range(6)] == pytest.approx([0.0003] * 6)
    config = tiny_config(train={"epochs": 1}, schedule=schedule.model_dump())
    sink = MemorySink()
    outcome = execute(config, sink=sink)
    assert outcome.status == "succeeded"
    assert [r.learning_rate for r in sink.history(outcome.run_id)] == pytest.approx([0.0003])


def test_constant_and_plateau_start_from_the_optimizer_rate() -> None:
    for name in ("constant", "plateau"):
        rate = learning_rate_for(ScheduleConfig(name=name), 0.05, epochs=3, steps_per_epoch=4)
        assert rate == 0.05


def _compiled_tiny_model() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(inputs))
    model.compile(keras.optimizers.Adam(0.1), loss="sparse_categorical_crossentropy")
    return model


def test_plateau_halves_the_rate_and_keeps_its_counter_across_a_restart() -> None:
    model = _compiled_tiny_model()
    plateau = ResumablePlateau(None, monitor="val_loss", factor=0.5, patience=2)
    plateau.set_model(model)
    plateau.on_train_begin()
    for epoch, loss in enumerate([1.0, 1.0]):
        plateau.on_epoch_end(epoch, {"val_loss": loss})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)
    saved = json.loads(json.dumps(plateau.state()))

    resumed = ResumablePlateau(saved, monitor="val_loss", factor=0.5, patience=2)
    resumed.set_model(model)
    resumed.on_train_begin()
    resumed.on_epoch_end(2, {"val_loss": 1.0})  # third epoch without improvement
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_early_stopping_keeps_best_weights_across_a_restart(tmp_path) -> None:
    run_dir = RunDirectory("es", root=tmp_path)
    run_dir.checkpoint_dir.mkdir(parents=True)
    model = _compiled_tiny_model()
    stopping = ResumableEarlyStopping(
        run_dir, None, monitor="val_loss", patience=2, restore_best_weights=True
    )
    stopping.set_model(model)
    stopping.on_train_begin()
    stopping.on_epoch_end(0, {"val_loss": 0.5})
    best = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1.0 for w in best])
    stopping.on_epoch_end(1, {"val_loss": 0.9})
    saved = json.loads(json.dumps(stopping.state()))

    resumed = ResumableEarlyStopping(
        run_dir, saved, monitor="val_loss", patience=2, restore_best_weights=True
    )
    resumed.set_model(model)
    resumed.on_train_begin()
    resumed.on_epoch_end(2, {"val_loss": 0.8})
    assert model.stop_training  # wait reached 2 counting the epoch before the restart
    resumed.on_train_end()
    for got, want in zip(model.get_weights(), best, strict=True):
        np.testing.assert_allclose(got, want)


def test_early_stopping_ends_a_run_and_restores_its_best_epoch() -> None:
    """Validation accuracy on the tiny synthetic set saturates (at 100%) within a few epochs and
    then cannot improve, so a patience of 1 stops the run well before its 12 epochs whatever
    the exact batches (validation loss, the earlier monitor here, kept falling on some)."""
    config = tiny_config(
        train={"epochs": 12, "early_stopping": {"monitor": "val_accuracy", "patience": 1}},
        optimizer={"learning_rate": 0.05},
    )
    sink = MemorySink()
    outcome = execute(config, sink=sink)
    history = sink.history(outcome.run_id)
    assert len(history) < 12
    best = max(history, key=lambda r: r.val_accuracy)  # the first of equals, as Keras keeps
    assert outcome.finish.best_epoch == best.epoch
    assert outcome.finish.val_accuracy == pytest.approx(best.val_accuracy, abs=0.02)
    # restored: the best epoch's weights, whose loss the later epochs' went on lowering
    assert outcome.finish.val_loss == pytest.approx(best.val_loss, rel=0.05)
    assert history[-1].val_loss < 0.9 * best.val_loss


def test_label_smoothing_matches_categorical_crossentropy_on_one_hot_labels() -> None:
    labels = np.array([0, 2, 1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], "float32")
    got = SparseSmoothedCrossentropy(0.2)(labels, probabilities)
    want = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(
        np.eye(3)[labels], probabilities
    )
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    plain = SparseSmoothedCrossentropy(0.0)(labels, probabilities)
    expected = -np.mean(np.log(probabilities[np.arange(3), labels]))
    assert float(plain) == pytest.approx(expected, rel=1e-5)


def test_optimizers_follow_the_config() -> None:
    sgd = build_optimizer(
        OptimizerConfig(name="sgd", momentum=0.9, nesterov=True, learning_rate=0.1), 0.1
    )
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    adamw = build_optimizer(OptimizerConfig(name="adamw", weight_decay=0.01), 0.001)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.01
    adam = build_optimizer(OptimizerConfig(name="adam"), 0.001)
    assert type(adam) is keras.optimizers.Adam


def test_l2_weight_decay_penalises_kernels_only() -> None:
    model = _compiled_tiny_model()
    training.apply_l2(model, 0.01)
    kernel, bias = model.get_layer("out").kernel, model.get_layer("out").bias
    assert kernel.regularizer is not None and bias.regularizer is None
    expected = 0.005 * float(np.sum(np.square(kernel.numpy())))
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_xla_and_mixed_precision_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(train={"xla": True, "mixed_precision": True})
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    with precision.precision_policy(True) as policy:
        assert policy == keras.config.dtype_policy().name == "mixed_bfloat16"  # no GPU here
        model = _compiled_tiny_model()
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("out").dtype_policy.name == "mixed_bfloat16"
    asked: dict = {}
    compile_model = model.compile
    # Keras silently drops XLA once op determinism is on in this process: record the request.
    monkeypatch.setattr(model, "compile", lambda **kw: (asked.update(kw), compile_model(**kw)))
    plan = build_plan(config, model, train_images=config.train.batch_size)
    training.compile_phase(model, plan, plan.phases[0])
    assert asked["jit_compile"] is True


def test_fine_tune_needs_a_model_with_a_base() -> None:
    sink = MemorySink()
    config = tiny_config(train={"fine_tune": {"epochs": 1, "learning_rate": 1e-4}})
    with pytest.raises(ConfigError, match="train.fine_tune"):
        execute(config, sink=sink)
    assert sink.starts == []  # refused before anything was written


def test_two_phases_number_epochs_on_and_resume_inside_the_fine_tune_phase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cifar_ops.runner.build_model", nested_base_model)
    fine_tune = {"epochs": 2, "learning_rate": 1e-4, "unfreeze_layers": 2}
    config = tiny_config(train={"epochs": 2, "fine_tune": fine_tune})
    sink = MemorySink()
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=sink, run_id="two-phase", callbacks=[preemption_after(3)])
    outcome = execute(config, sink=sink, run_id="two-phase")
    history = sink.history("two-phase")
    phases = [(r.epoch, r.phase) for r in history]
    assert phases == [(1, "train"), (2, "train"), (3, "fine_tune"), (4, "fine_tune")]
    assert [e for _, e in sink.epoch_writes] == [1, 2, 3, 4]
    assert [r.learning_rate for r in history[2:]] == pytest.approx([1e-4, 1e-4])
    model = keras.saving.load_model(outcome.model_path, compile=False)
    trainable = {layer.name: layer.trainable for layer in model.get_layer("base").layers}
    assert trainable == {"conv1": False, "bn1": False, "conv2": True, "pool": True}


@pytest.mark.slow
def test_a_real_transfer_model_fine_tunes_its_tail() -> None:
    config = tiny_config(
        data={"image_size": 32, "synthetic_images": 160},
        model={"name": "mobilenetv2", "input_size": 32, "weights": "none"},
        train={
            "epochs": 1,
            "fine_tune": {"epochs": 1, "learning_rate": 1e-4, "unfreeze_layers": 5},
        },
    )
    sink = MemorySink()
    outcome = execute(config, sink=sink)
    history = sink.history(outcome.run_id)
    assert [(r.epoch, r.phase) for r in history] == [(1, "train"), (2, "fine_tune")]
    model = keras.saving.load_model(outcome.model_path, compile=False)
    trainable = [layer.trainable for layer in model.get_layer("base").layers]
    assert any(trainable) and not all(trainable)


def test_a_diverging_run_is_failed_with_nan_kept() -> None:
    config = tiny_config(optimizer={"name": "sgd", "learning_rate": 1e12}, train={"epochs": 3})
    sink = MemorySink()
    outcome = execute(config, sink=sink)
    assert outcome.status == "failed"
    assert "loss became nan" in (sink.finishes[outcome.run_id].reason or "").lower()
    assert math.isnan(sink.history(outcome.run_id)[-1].loss)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])  # float16: loss-scaled (GPU)
def test_batch_norm_shifts_learn_faster_by_the_configured_scale(policy: str) -> None:
    def one_step(scale: float) -> dict[str, np.ndarray]:
        keras.utils.set_random_seed(3)
        keras.config.set_dtype_policy(policy)
        try:
            inputs = keras.Input((4,))
            x = keras.layers.Dense(3, use_bias=False, name="dense")(inputs)
            x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
            model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
            optimizer = build_optimizer(
                OptimizerConfig(name="sgd", learning_rate=0.01, batch_norm_lr_scale=scale), 0.01
            )
            model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError())
        finally:
            keras.config.set_dtype_policy("float32")
        loss_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert loss_scaled == (policy == "mixed_float16")
        before = {v.path: v.numpy().copy() for v in model.trainable_variables}
        rng = np.random.default_rng(0)
        model.fit(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)), batch_size=8, verbose=0)
        return {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}

    plain, scaled = one_step(1.0), one_step(64.0)
    assert np.abs(plain["bn/beta"]).max() > 0
    np.testing.assert_allclose(scaled["bn/beta"], 64 * plain["bn/beta"], rtol=1e-4)
    for path in ("dense/kernel", "head/kernel", "head/bias"):
        np.testing.assert_allclose(scaled[path], plain[path], rtol=1e-6)
    restored = keras.optimizers.deserialize(
        keras.optimizers.serialize(
            build_optimizer(OptimizerConfig(name="sgd", batch_norm_lr_scale=64.0), 0.1)
        )
    )
    assert restored.batch_norm_lr_scale == 64.0


def test_batch_norm_lr_scale_is_refused_for_adaptive_optimizers() -> None:
    with pytest.raises(ValueError, match="batch_norm_lr_scale works with name 'sgd' only"):
        OptimizerConfig(name="adamw", batch_norm_lr_scale=64.0)


def test_adamw_decays_inside_the_optimizer_so_kernels_carry_no_l2() -> None:
    from cifar_ops.optimizers import l2_coefficient

    assert l2_coefficient(OptimizerConfig(name="sgd", weight_decay=0.01)) == 0.01
    assert l2_coefficient(OptimizerConfig(name="adam", weight_decay=0.01)) == 0.01
    assert l2_coefficient(OptimizerConfig(name="adamw", weight_decay=0.01)) == 0.0


def test_the_plan_holds_what_the_engine_reads_from_the_config() -> None:
    from cifar_ops.plan import Phase

    fine_tune = {"epochs": 2, "learning_rate": 1e-4, "unfreeze_layers": 5}
    config = tiny_config(
        train={"epochs": 3, "batch_size": 32, "fine_tune": fine_tune, "label_smoothing": 0.1},
        schedule={"name": "plateau", "patience": 2},
        optimizer={"name": "adamw", "weight_decay": 0.01},
    )
    model = nested_base_model(None, input_shape=(16, 16, 3), num_classes=4)
    plan = build_plan(config, model, train_images=100)
    first, tuning = plan.phases
    assert first == Phase("train", 3, config.optimizer.learning_rate, config.schedule)
    assert (tuning.name, tuning.epochs, tuning.learning_rate) == ("fine_tune", 2, 1e-4)
    assert tuning.unfreeze_layers == 5 and tuning.schedule.name == "plateau"  # plateau carries on
    assert plan.steps_per_epoch == 4 and plan.train_images == 100  # ceil(100 / 32)
    assert plan.l2 == 0.0  # AdamW decays the weights itself
    assert plan.label_smoothing == 0.1 and plan.monitor == "val_accuracy"
    assert plan.phase("fine_tune") is tuning and plan.index("fine_tune") == 1


def test_best_model_is_replaced_only_by_a_finished_save(tmp_path) -> None:
    """A save that dies mid-write leaves the previous best.keras whole (written aside, renamed)."""
    from cifar_ops.callbacks import BestModelCheckpoint

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    final = tmp_path / "best.keras"
    best = BestModelCheckpoint(str(final), monitor="val_accuracy", mode="max", save_best_only=True)
    best.set_model(model)
    best.on_epoch_end(0, {"val_accuracy": 0.5})
    assert final.exists() and not (tmp_path / "best.partial.keras").exists()
    saved_weights = [w.copy() for w in keras.models.load_model(final).get_weights()]

    model.set_weights([w + 1.0 for w in model.get_weights()])
    real_save = model.save

    def torn_save(path, *args, **kwargs):  # writes part of the file, then the pod is killed
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 torn")
        raise KeyboardInterrupt

    model.save = torn_save
    with pytest.raises(KeyboardInterrupt):
        best.on_epoch_end(1, {"val_accuracy": 0.9})
    for got, want in zip(keras.models.load_model(final).get_weights(), saved_weights, strict=True):
        np.testing.assert_array_equal(got, want)  # the earlier best is intact

    model.save = real_save
    best.on_epoch_end(2, {"val_accuracy": 0.95})  # the next better epoch replaces it whole
    for got, want in zip(
        keras.models.load_model(final).get_weights(), model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_decay_shifts_shrinks_biases_and_fast_shifts_by_the_kernels_step() -> None:
    """optimizer.decay_shifts: one SGD step on the penalty alone shrinks a kernel, a bias and a
    BatchNorm shift (learning 64x faster) by the same fraction, as airbench's per-step decay."""
    from cifar_ops.optimizers import ShiftScaledSGD, shift_l2_coefficients

    config = OptimizerConfig(
        name="sgd", learning_rate=0.1, weight_decay=0.01, batch_norm_lr_scale=64, decay_shifts=True
    )
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="d")(inputs)
    outputs = keras.layers.BatchNormalization(scale=False, name="bn")(hidden)
    model = keras.Model(inputs, outputs)
    for variable in model.trainable_weights:
        variable.assign(np.full(variable.shape, 2.0, "float32"))
    training.apply_l2(model, 0.01, shift_l2_coefficients(config))
    before = {v.path: float(v.numpy().flat[0]) for v in model.trainable_weights}
    assert set(before) == {"d/kernel", "d/bias", "bn/beta"}

    import tensorflow as tf

    with tf.GradientTape() as tape:
        penalty = sum(model.losses)
    grads = tape.gradient(penalty, model.trainable_weights)
    ShiftScaledSGD(learning_rate=0.1, batch_norm_lr_scale=64).apply(grads, model.trainable_weights)
    shrink = {v.path: float(v.numpy().flat[0]) / before[v.path] for v in model.trainable_weights}
    for path, factor in shrink.items():
        assert factor == pytest.approx(1 - 0.1 * 0.01, abs=1e-6), path

    plain = keras.Model(inputs, outputs)  # without decay_shifts only the kernel carries a penalty
    for variable in plain.weights:
        variable.regularizer = None
    training.apply_l2(plain, 0.01)
    assert [v.path for v in plain.weights if v.regularizer] == ["d/kernel"]


def test_decay_shifts_needs_an_l2_weight_decay() -> None:
    with pytest.raises(ValueError, match="decay_shifts"):
        OptimizerConfig(name="sgd", decay_shifts=True)
    with pytest.raises(ValueError, match="decay_shifts"):
        OptimizerConfig(name="adamw", weight_decay=0.01, decay_shifts=True)

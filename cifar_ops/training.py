"""Compile and fit a model by its `TrainingPlan`: phases, optimizers, schedules, callbacks, resume.

`fit` trains in the plan's phases: `train`, then for transfer models with `train.fine_tune` a
`fine_tune` phase that unfreezes the base's tail and recompiles at the fine-tune rate. Epochs are
numbered on across phases. After every epoch the weights, the optimizer state and the callbacks'
counters are checkpointed in the run directory; calling `fit` again for the same directory
continues after the last readable checkpoint (checkpoints.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cifar_ops.backend import backend, has_gpu
from cifar_ops.callbacks import (
    BestModelCheckpoint,
    EpochCheckpoint,
    EpochListener,
    EpochRecorder,
    Resumable,
    ResumableEarlyStopping,
    ResumablePlateau,
    SinkWriter,
)
from cifar_ops.checkpoints import RunDirectory, TrainingState, storage_guard
from cifar_ops.data import Dataset
from cifar_ops.errors import ModelError
from cifar_ops.losses import SparseSmoothedCrossentropy
from cifar_ops.models import fit_to_data, set_trainable_tail
from cifar_ops.models.whitening import PatchWhitening
from cifar_ops.optimizers import SHIFT_SUFFIX, build_optimizer
from cifar_ops.plan import Phase, TrainingPlan
from cifar_ops.records import EpochRecord, RunSink
from cifar_ops.schedules import learning_rate_for
from cifar_ops.weight_averaging import FreezeAfter, Lookahead


@dataclass
class FitResult:
    """Every epoch of the run (across restarts), the best one, and whether the loss blew up."""

    history: list[EpochRecord]
    best_epoch: int | None
    diverged: bool
    pruned_at: int | None = None  # a search's pruner stopped the run after this epoch


def seed_everything(seed: int, *, xla: bool = False) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic ops where they are cheap.

    Op determinism is switched on for CPU-only runs without XLA: on a GPU it costs speed, and
    Keras turns XLA off under it. It cannot be switched off again in the same process.
    """
    keras.utils.set_random_seed(seed)
    if backend() == "tensorflow" and not xla and not has_gpu():
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def apply_l2(
    model: keras.Model, weight_decay: float, shifts: tuple[float, float] | None = None
) -> None:
    """L2-style weight decay for SGD and Adam: a penalty on every kernel that has none yet.

    `weight_decay` is the coefficient added to the gradient (grad + wd * w), so the penalty is
    wd / 2 * sum(w**2). Biases and BatchNorm shifts are decayed only when `shifts` gives their
    coefficients (biases, shifts): `optimizer.decay_shifts`.
    """
    bias, shift = shifts if shifts is not None else (0.0, 0.0)
    for variable in model.weights:
        if variable.regularizer is not None:
            continue
        if variable.path.endswith("kernel"):  # also depthwise_kernel
            coefficient = weight_decay
        elif variable.path.endswith(SHIFT_SUFFIX):
            coefficient = shift
        elif variable.path.endswith("/bias"):
            coefficient = bias
        else:
            continue
        if coefficient:
            variable.regularizer = keras.regularizers.L2(coefficient / 2)


def compile_phase(model: keras.Model, plan: TrainingPlan, phase: Phase) -> None:
    rate = learning_rate_for(
        phase.schedule,
        phase.learning_rate,
        epochs=phase.epochs,
        steps_per_epoch=plan.steps_per_epoch,
    )
    model.compile(
        optimizer=build_optimizer(plan.optimizer, rate),
        loss=SparseSmoothedCrossentropy(plan.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=plan.xla,
        steps_per_execution=plan.steps_per_execution,
    )


def fit(
    model: keras.Model,
    plan: TrainingPlan,
    dataset: Dataset,
    *,
    sink: RunSink,
    run_id: str,
    run_dir: RunDirectory,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 0,
) -> FitResult:
    """Train `model` through the plan's phases, resuming from `run_dir`'s newest checkpoint.

    Each epoch's record goes to the sink, then the checkpoint, then every callback that is also
    an `EpochListener` (has `on_epoch_record`), such as the metrics exporter. A listener that
    stops training and sets `pruned_at` (a search's `TrialReporter`) ends the run there.
    """
    state = run_dir.load_state() or TrainingState()
    epoch, epoch_setters = _epoch_tracking(plan, state.epochs_done)
    train, validation = _host_inputs(plan, dataset, epoch)
    apply_l2(model, plan.l2, plan.shift_l2)
    best_model = BestModelCheckpoint(
        str(run_dir.best_model_path),
        monitor=plan.monitor,
        save_best_only=True,
        initial_value_threshold=state.callbacks.get("best_model", {}).get("best"),
    )
    _restore_weights(model, plan, state, run_dir, dataset.train.images)
    listeners = [cb for cb in callbacks if isinstance(cb, EpochListener)]
    for index, phase in enumerate(plan.phases):
        if _phase_finished(plan, index, state):
            continue
        if state.phase != phase.name:  # entering the fine-tune phase: open the base's tail
            _enter_phase(model, plan, phase)
            state.phase, state.phase_start, state.phase_done = phase.name, state.epochs_done, False
            state.callbacks = {k: v for k, v in state.callbacks.items() if k == "best_model"}
        resumables = _phase_callbacks(plan, phase, state, run_dir, best_model)
        phase_end = state.phase_start + phase.epochs
        checkpoint = EpochCheckpoint(model, run_dir, state, resumables)
        recorder = EpochRecorder(
            phase.name, plan.train_images, [SinkWriter(sink, run_id), checkpoint, *listeners]
        )
        fitter, train_data, validation_data = _phase_inputs(
            model, plan, dataset, (train, validation), state.epochs_done
        )
        with storage_guard(run_dir.root):  # best.keras, written by Keras
            fitter.fit(
                train_data,
                validation_data=validation_data,
                initial_epoch=state.epochs_done,
                epochs=phase_end,
                callbacks=[
                    *[cb for cb in resumables.values() if cb is not best_model],
                    *epoch_setters,
                    *_feed_setters(train_data),
                    *weight_callbacks(model, plan, phase),
                    best_model,
                    recorder,
                    keras.callbacks.TerminateOnNaN(),
                    *callbacks,
                ],
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles, seeded
            )
        history = [EpochRecord(**r) for r in state.history]
        if history and not math.isfinite(history[-1].loss):
            return FitResult(history, _best_epoch(history, plan.monitor), diverged=True)
        pruned_at = next((p for cb in listeners if (p := getattr(cb, "pruned_at", None))), None)
        if pruned_at is not None:  # no later phase: the run ends at this epoch
            return FitResult(history, _best_epoch(history, plan.monitor), False, pruned_at)
        state.phase_done = True
        checkpoint.capture()
        run_dir.save(model, state)  # best weights restored, so a restart here keeps them
    history = [EpochRecord(**r) for r in state.history]
    return FitResult(history, _best_epoch(history, plan.monitor), diverged=False)


def _epoch_tracking(plan: TrainingPlan, first_epoch: int) -> tuple[Any, list[Any]]:
    """The host pipeline's epoch variable (its order and augmentation are keyed by it) and its
    setter; none on the device path, whose steps are fed their epoch (and which imports no
    TensorFlow)."""
    if plan.pipeline != "host":
        return None, []
    from cifar_ops.data.pipeline import EpochSetter, epoch_variable

    epoch = epoch_variable(first_epoch)
    return epoch, [EpochSetter(epoch)]


def _host_inputs(plan: TrainingPlan, dataset: Dataset, epoch: Any) -> tuple[Any, Any]:
    """The tf.data pipelines of the host path; (None, None) on the device path."""
    if plan.pipeline != "host":
        return None, None
    from cifar_ops.data import make_pipeline

    train = make_pipeline(
        dataset.train,
        batch_size=plan.batch_size,
        training=True,
        augmentation=plan.augmentation,
        seed=plan.seed,
        epoch=epoch,
    )
    validation = make_pipeline(
        dataset.validation,
        batch_size=plan.batch_size,
        training=False,
        augmentation=plan.augmentation,
        seed=plan.seed,
    )
    return train, validation


def _phase_inputs(
    model: keras.Model,
    plan: TrainingPlan,
    dataset: Dataset,
    host: tuple[Any, Any],
    first_epoch: int,
) -> tuple[keras.Model, Any, Any]:
    """What one phase fits: the model and the host pipelines, or the device trainer and feeds."""
    if plan.pipeline == "host":
        return model, *host
    from cifar_ops.data.device import device_inputs

    return device_inputs(
        model,
        dataset.train,
        dataset.validation,
        augmentation=plan.augmentation,
        batch_size=plan.batch_size,
        seed=plan.seed,
        first_epoch=first_epoch,
        jit_compile=plan.xla if keras.backend.backend() == "tensorflow" else "auto",
        steps_per_execution=plan.steps_per_execution,
    )


def _feed_setters(train_data: Any) -> list[keras.callbacks.Callback]:
    """The device feed's epoch mover (the host pipeline's epoch is `_epoch_tracking`'s)."""
    from cifar_ops.data.device import EpochFeed, StepFeed

    return [EpochFeed(train_data)] if isinstance(train_data, StepFeed) else []


def _phase_finished(plan: TrainingPlan, index: int, state: TrainingState) -> bool:
    current = plan.index(state.phase)
    return index < current or (index == current and state.phase_done)


def _restore_weights(
    model: keras.Model,
    plan: TrainingPlan,
    state: TrainingState,
    run_dir: RunDirectory,
    dataset_images: np.ndarray,
) -> None:
    """Compile for the checkpoint's phase and load its weights and optimizer state into it.

    A fresh run instead fits the model's data-fitted layers (whitening) to the training images.
    """
    phase = plan.phase(state.phase)
    if phase is plan.phases[0]:
        compile_phase(model, plan, phase)
    else:
        _enter_phase(model, plan, phase)
    if state.weights_file is None:
        fit_to_data(model, dataset_images)
        return
    model.optimizer.build(model.trainable_variables)
    path = run_dir.weights_path(state)
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as exc:  # intact (digest checked) but not this model's
        raise ModelError(
            f"{path}: the checkpoint does not fit this run's model ({exc}); "
            "start the config under a new run id"
        ) from exc


def _enter_phase(model: keras.Model, plan: TrainingPlan, phase: Phase) -> None:
    assert phase.unfreeze_layers is not None
    set_trainable_tail(model, phase.unfreeze_layers)
    compile_phase(model, plan, phase)


def _phase_callbacks(
    plan: TrainingPlan,
    phase: Phase,
    state: TrainingState,
    run_dir: RunDirectory,
    best_model: BestModelCheckpoint,
) -> dict[str, Resumable]:
    resumables: dict[str, Resumable] = {"best_model": best_model}
    if phase.schedule.name == "plateau":
        resumables["plateau"] = ResumablePlateau(
            state.callbacks.get("plateau"),
            monitor="val_loss",
            factor=phase.schedule.factor,
            patience=phase.schedule.patience,
            min_lr=phase.schedule.min_learning_rate,
        )
    stopping = plan.early_stopping
    if stopping is not None:
        resumables["early_stopping"] = ResumableEarlyStopping(
            run_dir,
            state.callbacks.get("early_stopping"),
            monitor=stopping.monitor,
            patience=stopping.patience,
            restore_best_weights=stopping.restore_best_weights,
        )
    return resumables


def weight_callbacks(
    model: keras.Model, plan: TrainingPlan, phase: Phase
) -> list[keras.callbacks.Callback]:
    """Lookahead, then the whitening-bias freeze (so a sync cannot move a frozen bias)."""
    found: list[keras.callbacks.Callback] = []
    if plan.lookahead is not None:
        found.append(
            Lookahead(
                plan.lookahead.every,
                plan.lookahead.decay_per_step,
                total_steps=phase.epochs * plan.steps_per_epoch,
                steps_per_epoch=plan.steps_per_epoch,
            )
        )
    if plan.whiten_bias_epochs is not None:
        biases = [layer.bias for layer in model.layers if isinstance(layer, PatchWhitening)]
        found.append(FreezeAfter(biases, plan.whiten_bias_epochs))
    return found


def _best_epoch(history: list[EpochRecord], monitor: str) -> int | None:
    scored = [(getattr(r, monitor), r.epoch) for r in history if getattr(r, monitor) is not None]
    scored = [(v, e) for v, e in scored if math.isfinite(v)]
    if not scored:
        return None
    if monitor == "val_loss":
        return min(scored, key=lambda item: (item[0], item[1]))[1]
    return max(scored, key=lambda item: (item[0], -item[1]))[1]

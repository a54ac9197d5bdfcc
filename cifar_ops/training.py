"""Compile and fit a model from a `RunConfig`: optimizers, schedules, callbacks, two phases, resume.

`fit` trains in phases: `train`, then for transfer models with `train.fine_tune` a `fine_tune`
phase that unfreezes the base's tail and recompiles at the fine-tune rate. Epochs are numbered on
across phases. After every epoch the weights, the optimizer state and the callbacks' counters are
checkpointed in the run directory; calling `fit` again for the same directory continues after the
last completed epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cifar_ops.callbacks import (
    BestModelCheckpoint,
    EpochCheckpoint,
    EpochLogger,
    ResumableEarlyStopping,
    ResumablePlateau,
)
from cifar_ops.checkpoints import RunDirectory, TrainingState
from cifar_ops.config import RunConfig, ScheduleConfig
from cifar_ops.data import Dataset
from cifar_ops.errors import ConfigError
from cifar_ops.losses import SparseSmoothedCrossentropy
from cifar_ops.models import fit_to_data
from cifar_ops.optimizers import build_optimizer, l2_coefficient
from cifar_ops.records import EpochRecord, RunSink
from cifar_ops.schedules import learning_rate_for

BASE_LAYER = "base"  # the frozen application inside a transfer model (models/ contract)


@dataclass(frozen=True)
class Phase:
    """One `model.fit` call: its name (EpochRecord.phase), length, rate and schedule."""

    name: str
    epochs: int
    learning_rate: float
    schedule: ScheduleConfig


@dataclass
class FitResult:
    """Every epoch of the run (across restarts), the best one, and whether the loss blew up."""

    history: list[EpochRecord]
    best_epoch: int | None
    diverged: bool


def seed_everything(seed: int, *, xla: bool = False) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic ops where they are cheap.

    Op determinism is switched on for CPU-only runs without XLA: on a GPU it costs speed, and
    Keras turns XLA off under it. It cannot be switched off again in the same process.
    """
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if not xla and not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """Mixed precision while building and training: float16 on a GPU, bfloat16 on a CPU."""
    import tensorflow as tf

    if not mixed:
        yield
        return
    previous = keras.config.dtype_policy()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    keras.config.set_dtype_policy("mixed_float16" if gpu else "mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def phases(config: RunConfig, model: keras.Model) -> list[Phase]:
    """The head/full phase, then the fine-tune phase of a transfer model (plateau carries over)."""
    first = Phase("train", config.train.epochs, config.optimizer.learning_rate, config.schedule)
    tune = config.train.fine_tune
    if tune is None:
        return [first]
    if not has_base(model):
        raise ConfigError(
            f"train.fine_tune: model {config.model.name!r} has no frozen base to fine-tune; "
            "use it with mobilenetv2 or efficientnetv2b0, or remove train.fine_tune"
        )
    name = "plateau" if config.schedule.name == "plateau" else "constant"
    schedule = config.schedule.model_copy(update={"name": name, "stages": []})
    return [first, Phase("fine_tune", tune.epochs, tune.learning_rate, schedule)]


def has_base(model: keras.Model) -> bool:
    return any(layer.name == BASE_LAYER for layer in model.layers)


def apply_l2(model: keras.Model, weight_decay: float) -> None:
    """L2-style weight decay for SGD and Adam: a penalty on every kernel that has none yet.

    `weight_decay` is the coefficient added to the gradient (grad + wd * w), so the penalty is
    wd / 2 * sum(w**2). Biases and BatchNorm parameters are not decayed.
    """
    if not weight_decay:
        return
    for variable in model.weights:
        if variable.path.endswith("kernel") and variable.regularizer is None:
            variable.regularizer = keras.regularizers.L2(weight_decay / 2)


def compile_phase(
    model: keras.Model, config: RunConfig, phase: Phase, steps_per_epoch: int
) -> None:
    rate = learning_rate_for(
        phase.schedule, phase.learning_rate, epochs=phase.epochs, steps_per_epoch=steps_per_epoch
    )
    model.compile(
        optimizer=build_optimizer(config.optimizer, rate),
        loss=SparseSmoothedCrossentropy(config.train.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.train.xla,
    )


def monitor_of(config: RunConfig) -> str:
    stopping = config.train.early_stopping
    return stopping.monitor if stopping else "val_accuracy"


def fit(
    model: keras.Model,
    config: RunConfig,
    dataset: Dataset,
    *,
    sink: RunSink,
    run_id: str,
    run_dir: RunDirectory,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 0,
) -> FitResult:
    """Train `model` through its phases, resuming from `run_dir`'s checkpoint when there is one."""
    from cifar_ops.data import make_pipeline

    batch = config.train.batch_size
    steps = math.ceil(len(dataset.train.labels) / batch)
    train = make_pipeline(
        dataset.train,
        batch_size=batch,
        training=True,
        augmentation=config.augmentation,
        seed=config.seed,
    )
    validation = make_pipeline(
        dataset.validation,
        batch_size=batch,
        training=False,
        augmentation=config.augmentation,
        seed=config.seed,
    )
    apply_l2(model, l2_coefficient(config.optimizer))
    plan = phases(config, model)
    state = run_dir.load_state() or TrainingState()
    best_model = BestModelCheckpoint(
        str(run_dir.best_model_path),
        monitor=monitor_of(config),
        save_best_only=True,
        initial_value_threshold=state.callbacks.get("best_model", {}).get("best"),
    )
    _restore_weights(model, config, plan, state, run_dir, steps, dataset.train.images)
    for index, phase in enumerate(plan):
        if _phase_finished(plan, index, state):
            continue
        if state.phase != phase.name:  # entering the fine-tune phase: open the base's tail
            _enter_phase(model, config, phase, steps)
            state.phase, state.phase_start, state.phase_done = phase.name, state.epochs_done, False
            state.callbacks = {k: v for k, v in state.callbacks.items() if k == "best_model"}
        resumables = _phase_callbacks(config, phase, state, run_dir, best_model)
        checkpoint = EpochCheckpoint(run_dir, state, resumables)
        logger = EpochLogger(sink, run_id, state, phase.name, len(dataset.train.labels))
        model.fit(
            train,
            validation_data=validation,
            initial_epoch=state.epochs_done,
            epochs=state.phase_start + phase.epochs,
            callbacks=[
                *[cb for cb in resumables.values() if cb is not best_model],
                best_model,
                logger,
                checkpoint,
                keras.callbacks.TerminateOnNaN(),
                *callbacks,
            ],
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles, seeded
        )
        history = [EpochRecord(**r) for r in state.history]
        if history and not math.isfinite(history[-1].loss):
            return FitResult(history, _best_epoch(history, config), diverged=True)
        state.phase_done = True
        checkpoint.capture()
        run_dir.save(model, state)  # best weights restored, so a restart here keeps them
    history = [EpochRecord(**r) for r in state.history]
    return FitResult(history, _best_epoch(history, config), diverged=False)


def _phase_finished(plan: list[Phase], index: int, state: TrainingState) -> bool:
    current = next(i for i, p in enumerate(plan) if p.name == state.phase)
    return index < current or (index == current and state.phase_done)


def _restore_weights(
    model: keras.Model,
    config: RunConfig,
    plan: list[Phase],
    state: TrainingState,
    run_dir: RunDirectory,
    steps: int,
    dataset_images: np.ndarray,
) -> None:
    """Compile for the checkpoint's phase and load its weights and optimizer state into it.

    A fresh run instead fits the model's data-fitted layers (whitening) to the training images.
    """
    phase = next(p for p in plan if p.name == state.phase)
    if phase is plan[0]:
        compile_phase(model, config, phase, steps)
    else:
        _enter_phase(model, config, phase, steps)
    if state.weights_file is None:
        fit_to_data(model, dataset_images)
        return
    model.optimizer.build(model.trainable_variables)
    model.load_weights(run_dir.weights_path(state))


def _enter_phase(model: keras.Model, config: RunConfig, phase: Phase, steps: int) -> None:
    from cifar_ops.models import set_trainable_tail

    assert config.train.fine_tune is not None
    set_trainable_tail(model, config.train.fine_tune.unfreeze_layers)
    compile_phase(model, config, phase, steps)


def _phase_callbacks(
    config: RunConfig,
    phase: Phase,
    state: TrainingState,
    run_dir: RunDirectory,
    best_model: BestModelCheckpoint,
) -> dict[str, Any]:
    resumables: dict[str, Any] = {"best_model": best_model}
    if phase.schedule.name == "plateau":
        resumables["plateau"] = ResumablePlateau(
            state.callbacks.get("plateau"),
            monitor="val_loss",
            factor=phase.schedule.factor,
            patience=phase.schedule.patience,
            min_lr=phase.schedule.min_learning_rate,
        )
    stopping = config.train.early_stopping
    if stopping is not None:
        resumables["early_stopping"] = ResumableEarlyStopping(
            run_dir,
            state.callbacks.get("early_stopping"),
            monitor=stopping.monitor,
            patience=stopping.patience,
            restore_best_weights=stopping.restore_best_weights,
        )
    return resumables


def _best_epoch(history: list[EpochRecord], config: RunConfig) -> int | None:
    monitor = monitor_of(config)
    scored = [(getattr(r, monitor), r.epoch) for r in history if getattr(r, monitor) is not None]
    scored = [(v, e) for v, e in scored if math.isfinite(v)]
    if not scored:
        return None
    if monitor == "val_loss":
        return min(scored, key=lambda item: (item[0], item[1]))[1]
    return max(scored, key=lambda item: (item[0], -item[1]))[1]

"""The training plan: what `training.fit` runs, built once from a config and the built model.

`runner.execute` builds the plan before the run is registered, so a config the model cannot
follow (a fine-tune phase for a model with no frozen base) is refused before anything is written.
`training.fit` and the callbacks it makes read only the plan, never the config: the config is
interpreted here, in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cifar_ops.backend import check_backend, require_tensorflow
from cifar_ops.config import (
    AugmentationConfig,
    EarlyStoppingConfig,
    FastModel,
    LookaheadConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
)
from cifar_ops.data.device_rule import resolve_pipeline
from cifar_ops.data.draws import has_geometry
from cifar_ops.errors import ConfigError
from cifar_ops.optimizers import l2_coefficient, shift_l2_coefficients

if TYPE_CHECKING:
    import keras

BASE_LAYER = "base"  # the frozen application inside a transfer model (models/ contract)


@dataclass(frozen=True)
class Phase:
    """One `model.fit` call: its name (EpochRecord.phase), length, rate and schedule."""

    name: str
    epochs: int
    learning_rate: float
    schedule: ScheduleConfig
    unfreeze_layers: int | None = None  # fine-tune: how many of the base's last layers train


@dataclass(frozen=True)
class TrainingPlan:
    """The phases and everything each phase is compiled and called back with."""

    phases: tuple[Phase, ...]
    optimizer: OptimizerConfig
    l2: float  # L2 penalty coefficient on kernels (0 where the optimizer decays weights itself)
    # L2 coefficients of biases and of BatchNorm shifts (optimizer.decay_shifts), else None
    shift_l2: tuple[float, float] | None
    label_smoothing: float
    batch_size: int
    steps_per_epoch: int
    train_images: int
    xla: bool
    seed: int
    augmentation: AugmentationConfig
    monitor: str  # what "best" means: the early-stopping monitor, else val_accuracy
    early_stopping: EarlyStoppingConfig | None
    lookahead: LookaheadConfig | None = None
    whiten_bias_epochs: int | None = None  # the whitening bias is fixed from this epoch on
    pipeline: str = "host"  # host (tf.data) or device (data/device.py), `auto` resolved
    replicas: int = 1  # batch_size is the global batch, split across these (distribution.py)
    learning_rate_scale: float = 1.0  # applied to every rate in `phases` (the linear rule)
    steps_per_execution: int = 1  # training steps per call of the compiled step

    @property
    def replica_batch_size(self) -> int:
        return self.batch_size // self.replicas

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def index(self, name: str) -> int:
        return next(i for i, p in enumerate(self.phases) if p.name == name)


def build_plan(
    config: RunConfig, model: keras.Model, *, train_images: int, replicas: int = 1
) -> TrainingPlan:
    """The plan for `model` (built, uncompiled) on a training split of `train_images` images,
    trained on `replicas` replicas.

    Raises `ConfigError` when `train.fine_tune` is set for a model with no frozen base, or a
    global `train.batch_size` does not split evenly across the replicas.
    """
    train = config.train
    stopping = train.early_stopping
    train_bytes = train_images * config.data.image_size**2 * 3
    pipeline = resolve_pipeline(config.data.pipeline, train_bytes)
    if pipeline == "device" and replicas > 1:  # the device path feeds one replica
        if config.data.pipeline != "auto":
            raise ConfigError(
                f"the device data path feeds one replica, this run has {replicas}; use "
                "data.pipeline: host (or auto) for more than one GPU",
                key="data.pipeline",
            )
        pipeline = "host"
    check_backend()
    _check_device_xla(config, pipeline)
    if pipeline == "host":
        require_tensorflow(
            "host (the tf.data pipeline)",
            key="data.pipeline",
            instead="set data.pipeline: device",
        )
    batch_size, scale = global_batch(config, replicas)
    return TrainingPlan(
        phases=_phases(config, model, scale),
        optimizer=config.optimizer,
        l2=l2_coefficient(config.optimizer),
        shift_l2=shift_l2_coefficients(config.optimizer),
        label_smoothing=train.label_smoothing,
        batch_size=batch_size,
        steps_per_epoch=math.ceil(train_images / batch_size),
        train_images=train_images,
        xla=train.xla,
        seed=config.seed,
        augmentation=config.augmentation,
        monitor=stopping.monitor if stopping else "val_accuracy",
        early_stopping=stopping,
        lookahead=train.lookahead,
        steps_per_execution=train.steps_per_execution,
        pipeline=pipeline,
        whiten_bias_epochs=(
            config.model.whiten_bias_epochs if isinstance(config.model, FastModel) else None
        ),
        replicas=replicas,
        learning_rate_scale=scale,
    )


def global_batch(config: RunConfig, replicas: int) -> tuple[int, float]:
    """The global batch over `replicas` replicas, and the factor on every learning rate.

    Per-replica `train.batch_size` (the default): the global batch is replicas x batch_size and
    the rates are multiplied by replicas (unless `train.scale_learning_rate: false`). Global
    (`train.batch_size_is_global: true`): batch_size, split evenly; the rates as written.
    """
    train = config.train
    if train.batch_size_is_global:
        if train.batch_size % replicas:
            raise ConfigError(
                f"{train.batch_size} does not split evenly across {replicas} replicas; use a "
                f"multiple of {replicas} or train.batch_size_is_global: false",
                key="train.batch_size",
            )
        return train.batch_size, 1.0
    return train.batch_size * replicas, float(replicas) if train.scale_learning_rate else 1.0


def _phases(config: RunConfig, model: keras.Model, scale: float) -> tuple[Phase, ...]:
    """The head/full phase, then the fine-tune phase of a transfer model (plateau carries over).

    Every absolute rate is multiplied by `scale`: the phase's rate, the piecewise stages' and the
    cosine/plateau floor; fractions of the peak stay as they are.
    """
    schedule = _scaled(config.schedule, scale)
    rate = config.optimizer.learning_rate * scale
    first = Phase("train", config.train.epochs, rate, schedule)
    tune = config.train.fine_tune
    if tune is None:
        return (first,)
    if not has_base(model):
        raise ConfigError(
            f"model {config.model.name!r} has no frozen base to fine-tune; use it with "
            "mobilenetv2 or efficientnetv2b0, or remove train.fine_tune",
            key="train.fine_tune",
        )
    name = "plateau" if config.schedule.name == "plateau" else "constant"
    tuning_schedule = schedule.model_copy(update={"name": name, "stages": []})
    tuning = Phase(
        "fine_tune",
        tune.epochs,
        tune.learning_rate * scale,
        tuning_schedule,
        tune.unfreeze_layers,
    )
    return (first, tuning)


def _scaled(schedule: ScheduleConfig, scale: float) -> ScheduleConfig:
    if scale == 1.0:
        return schedule
    stages = [
        s.model_copy(update={"learning_rate": s.learning_rate * scale}) for s in schedule.stages
    ]
    floor = schedule.min_learning_rate * scale
    return schedule.model_copy(update={"stages": stages, "min_learning_rate": floor})


def _check_device_xla(config: RunConfig, pipeline: str) -> None:
    """TensorFlow's affine resampling op has no XLA kernel: the device path cannot compile
    rotation, shifts or zoom into an XLA step there (JAX's can; the host path augments outside)."""
    if pipeline != "device" or not config.train.xla or not has_geometry(config.augmentation):
        return
    from cifar_ops.backend import backend

    if backend() == "tensorflow":
        raise ConfigError(
            "data.pipeline: device with rotation, shifts or zoom cannot run under XLA on the "
            "TensorFlow backend (its affine resampling op has no XLA kernel); set train.xla: "
            "false, data.pipeline: host, or KERAS_BACKEND=jax",
            key="train.xla",
        )


def has_base(model: keras.Model) -> bool:
    return any(layer.name == BASE_LAYER for layer in model.layers)

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

from cifar_ops.config import (
    AugmentationConfig,
    EarlyStoppingConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
)
from cifar_ops.errors import ConfigError
from cifar_ops.optimizers import l2_coefficient

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
    label_smoothing: float
    batch_size: int
    steps_per_epoch: int
    train_images: int
    xla: bool
    seed: int
    augmentation: AugmentationConfig
    monitor: str  # what "best" means: the early-stopping monitor, else val_accuracy
    early_stopping: EarlyStoppingConfig | None

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def index(self, name: str) -> int:
        return next(i for i, p in enumerate(self.phases) if p.name == name)


def build_plan(config: RunConfig, model: keras.Model, *, train_images: int) -> TrainingPlan:
    """The plan for `model` (built, uncompiled) on a training split of `train_images` images.

    Raises `ConfigError` when `train.fine_tune` is set for a model with no frozen base.
    """
    train = config.train
    stopping = train.early_stopping
    return TrainingPlan(
        phases=_phases(config, model),
        optimizer=config.optimizer,
        l2=l2_coefficient(config.optimizer),
        label_smoothing=train.label_smoothing,
        batch_size=train.batch_size,
        steps_per_epoch=math.ceil(train_images / train.batch_size),
        train_images=train_images,
        xla=train.xla,
        seed=config.seed,
        augmentation=config.augmentation,
        monitor=stopping.monitor if stopping else "val_accuracy",
        early_stopping=stopping,
    )


def _phases(config: RunConfig, model: keras.Model) -> tuple[Phase, ...]:
    """The head/full phase, then the fine-tune phase of a transfer model (plateau carries over)."""
    first = Phase("train", config.train.epochs, config.optimizer.learning_rate, config.schedule)
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
    schedule = config.schedule.model_copy(update={"name": name, "stages": []})
    tuning = Phase("fine_tune", tune.epochs, tune.learning_rate, schedule, tune.unfreeze_layers)
    return (first, tuning)


def has_base(model: keras.Model) -> bool:
    return any(layer.name == BASE_LAYER for layer in model.layers)

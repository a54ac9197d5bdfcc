"""Learning-rate schedules from `config.schedule`, as Keras objects that resume exactly.

Piecewise, cosine and one-cycle are `LearningRateSchedule`s of the optimizer's step counter, which
is saved with the optimizer state, so a resumed run picks up the curve mid-epoch where it stopped.
`constant` and `plateau` are a plain rate (plateau lowers it from a callback in training.py).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from cifar_ops.config import ScheduleConfig

ONE_CYCLE_DIV_FACTOR = 25.0  # warm-ups start at peak / 25 (PyTorch OneCycleLR's default) ...
ONE_CYCLE_FINAL_DIV_FACTOR = 1e4  # ... and one-cycle ends at its start / 1e4


@keras.saving.register_keras_serializable(package="cifar_ops")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear rise from `peak * start_fraction` to `peak` over `peak_fraction` of training, then a
    linear fall to `peak * end_fraction`, by default nearly zero (airbench's triangle ends at
    0.07; 1/25 is PyTorch OneCycleLR's start)."""

    def __init__(
        self,
        peak: float,
        total_steps: int,
        peak_fraction: float,
        start_fraction: float = 1 / ONE_CYCLE_DIV_FACTOR,
        end_fraction: float | None = None,
    ):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.peak_fraction = float(peak_fraction)
        self.start_fraction = float(start_fraction)
        self.end_fraction = None if end_fraction is None else float(end_fraction)

    def __call__(self, step: Any) -> Any:
        start = self.peak * self.start_fraction
        if self.end_fraction is None:
            end = start / ONE_CYCLE_FINAL_DIV_FACTOR
        else:
            end = self.peak * self.end_fraction
        rise = max(1.0, self.peak_fraction * self.total_steps)
        fall = max(1.0, self.total_steps - rise)
        step = ops.cast(step, "float32")
        rising = start + (self.peak - start) * step / rise
        falling = self.peak + (end - self.peak) * ops.minimum((step - rise) / fall, 1.0)
        return ops.where(step < rise, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "peak_fraction": self.peak_fraction,
            "start_fraction": self.start_fraction,
            "end_fraction": self.end_fraction,
        }


def learning_rate_for(
    schedule: ScheduleConfig, base_rate: float, *, epochs: int, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's `learning_rate` for a phase of `epochs` epochs of `steps_per_epoch` steps."""
    total = max(1, epochs * steps_per_epoch)
    if schedule.name == "piecewise":
        boundaries, values, done = [], [], 0
        for stage in schedule.stages:
            values.append(stage.learning_rate)
            done += stage.epochs
            boundaries.append(done * steps_per_epoch - 1)  # Keras: values[i] while step <= b_i
        if len(values) == 1:  # Keras's piecewise schedule needs a boundary
            return float(values[0])
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries[:-1], values)
    if schedule.name == "cosine":
        warmup = int(round(schedule.warmup_epochs * steps_per_epoch))
        alpha = min(1.0, schedule.min_learning_rate / base_rate)
        if warmup == 0:
            return keras.optimizers.schedules.CosineDecay(base_rate, total, alpha=alpha)
        return keras.optimizers.schedules.CosineDecay(
            base_rate / ONE_CYCLE_DIV_FACTOR,
            max(1, total - warmup),
            alpha=alpha,
            warmup_target=base_rate,
            warmup_steps=warmup,
        )
    if schedule.name == "one_cycle":
        return OneCycle(
            base_rate,
            total,
            schedule.peak_fraction,
            schedule.start_fraction,
            schedule.end_fraction,
        )
    return float(base_rate)  # constant, plateau


def rate_at(learning_rate: Any, step: int) -> float:
    """The rate an optimizer uses at `step`, whether it holds a schedule or a plain rate."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return float(ops.convert_to_numpy(learning_rate(step)))
    return float(ops.convert_to_numpy(learning_rate))

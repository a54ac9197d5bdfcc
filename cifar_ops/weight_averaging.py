"""Callbacks that act on the weights between steps: airbench's lookahead and bias freeze.

`Lookahead` keeps a slow copy of every float weight (BatchNorm statistics included) and every
`every` steps moves it towards the trained weights, then restarts training from it. It also syncs
at each epoch's last step, so validation, checkpoints and the saved model hold the slow weights,
and a run resumed from an epoch's checkpoint continues exactly: the slow copy is the checkpointed
weights themselves, and the step count comes from the optimizer (also checkpointed).

`FreezeAfter` fixes some variables after a number of epochs by restoring them after each step;
on resume past that epoch the checkpoint already holds the fixed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


def lookahead_decay(step: int, total: int, steps: int, decay_per_step: float) -> float:
    """How much of the slow weights a sync keeps: `decay_per_step ** steps` (the steps since the
    last sync) scaled by `(step / total) ** 3`, so early syncs copy the trained weights."""
    progress = min(1.0, max(0.0, step / max(1, total)))
    return decay_per_step**steps * progress**3


class Lookahead(keras.callbacks.Callback):
    """Lookahead over `total_steps` optimizer steps of a phase of `steps_per_epoch` steps."""

    def __init__(self, every: int, decay_per_step: float, total_steps: int, steps_per_epoch: int):
        super().__init__()
        self.every, self.decay_per_step = every, decay_per_step
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.slow: list[Any] = []
        self.last_sync = 0

    def _variables(self) -> list[Any]:
        return [v for v in self.model.weights if "float" in str(v.dtype)]

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        variables = self._variables()
        self.slow = [keras.ops.convert_to_numpy(v).copy() for v in variables]
        self.last_sync = self._step()

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self._step()
        if step % self.every and (batch + 1) % self.steps_per_epoch:
            return
        self.sync(step)

    def sync(self, step: int) -> None:
        """slow <- decay * slow + (1 - decay) * fast; fast <- slow."""
        decay = lookahead_decay(step, self.total_steps, step - self.last_sync, self.decay_per_step)
        for i, variable in enumerate(self._variables()):
            fast = keras.ops.convert_to_numpy(variable)
            self.slow[i] = decay * self.slow[i] + (1.0 - decay) * fast
            variable.assign(self.slow[i].astype(fast.dtype))
        self.last_sync = step


class FreezeAfter(keras.callbacks.Callback):
    """Keeps `variables` at their values from the start of epoch `epochs` (0-based) onwards."""

    def __init__(self, variables: Sequence[Any], epochs: int):
        super().__init__()
        self.variables, self.epochs = list(variables), epochs
        self.frozen: list[Any] | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch >= self.epochs and self.frozen is None:
            self.frozen = [keras.ops.convert_to_numpy(v).copy() for v in self.variables]

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.frozen is not None:
            for variable, value in zip(self.variables, self.frozen, strict=True):
                variable.assign(value)

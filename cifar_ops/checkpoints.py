"""A run's directory, and the per-epoch checkpoint that lets a restarted run resume.

Layout of `settings.artifacts_dir()/<run_id>/`:
  config.json          the run config and its hash (a resume with another config is refused)
  classes.json         class names, read by `predict` and `evaluate` next to model.keras
  checkpoint/          last-<epoch>.weights.h5 (weights + optimizer state) and state.json
  best.keras           the best model so far (by the early-stopping monitor, else val_accuracy)
  model.keras          the final model

state.json is written after the weights file it names and replaced atomically, so a process
killed mid-save leaves the previous complete checkpoint: a restarted pod loses at most one epoch.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifar_ops.config import RunConfig
from cifar_ops.errors import ConfigError
from cifar_ops.settings import artifacts_dir


@dataclass
class TrainingState:
    """Where training stands after the last completed epoch."""

    epochs_done: int = 0  # completed epochs, counted across phases
    phase: str = "train"  # phase the weights file was written in
    phase_start: int = 0  # epochs done when this phase began
    phase_done: bool = False  # the phase ended (best weights restored, if asked)
    weights_file: str | None = None  # name inside checkpoint/
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochRecord dicts, in order
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # resumable callback state

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        return cls(**json.loads(text))


class RunDirectory:
    """Paths of one run's artifacts, and atomic reads and writes of its checkpoint."""

    def __init__(self, run_id: str, root: Path | None = None):
        self.run_id = run_id
        self.root = (root or artifacts_dir()) / run_id
        self.checkpoint_dir = self.root / "checkpoint"
        self.state_path = self.checkpoint_dir / "state.json"
        self.config_path = self.root / "config.json"
        self.classes_path = self.root / "classes.json"
        self.best_model_path = self.root / "best.keras"
        self.model_path = self.root / "model.keras"

    def create(self, config: RunConfig, class_names: list[str]) -> None:
        """Make the directory; refuse to resume a run id that was started with another config."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        digest = config.config_hash()
        if self.config_path.exists():
            recorded = json.loads(self.config_path.read_text()).get("config_hash")
            if recorded != digest:
                raise ConfigError(
                    f"run {self.run_id} was started with config hash {recorded}, this config "
                    f"hashes to {digest}; resume it with its own config or use a new --run-id",
                    path=str(self.config_path),
                )
        payload = {"config_hash": digest, "config": config.model_dump(mode="json")}
        write_text_atomically(self.config_path, json.dumps(payload, indent=2, sort_keys=True))
        write_text_atomically(self.classes_path, json.dumps(class_names))

    def load_state(self) -> TrainingState | None:
        """The last complete checkpoint, or None for a fresh run."""
        if not self.state_path.exists():
            return None
        state = TrainingState.from_json(self.state_path.read_text())
        if state.weights_file and not (self.checkpoint_dir / state.weights_file).exists():
            return None
        return state

    def weights_path(self, state: TrainingState) -> Path:
        assert state.weights_file is not None
        return self.checkpoint_dir / state.weights_file

    def save(self, model: Any, state: TrainingState) -> None:
        """Write the weights (with optimizer state), then point state.json at them."""
        suffix = "end" if state.phase_done else "epoch"
        name = f"{state.phase}-{suffix}-{state.epochs_done:04d}.weights.h5"
        previous = self.load_state()
        tmp = self.checkpoint_dir / f"tmp-{name}"
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.checkpoint_dir / name)
        state.weights_file = name
        write_text_atomically(self.state_path, json.dumps(asdict(state), allow_nan=True))
        if previous and previous.weights_file and previous.weights_file != name:
            (self.checkpoint_dir / previous.weights_file).unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

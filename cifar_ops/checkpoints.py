"""A run's directory, and the per-epoch checkpoints that let a restarted run resume.

Layout of `settings.artifacts_dir()/<run_id>/`:
  config.json          the run config, its hash and its global batch over its replicas (a
                       resume with another config or global batch is refused)
  classes.json         class names, read by `predict` and `evaluate` next to model.keras
  checkpoint/          <phase>-<epoch|end>-<NNNN>.weights.h5 (weights + optimizer state), each
                       with its <same name>.state.json (TrainingState and the weights' sha256);
                       the newest two are kept
  best.keras           the best model so far (by the early-stopping monitor, else val_accuracy)
  model.keras          the final model

Every file is written under a temporary name, fsynced, renamed and its directory fsynced, and a
state file only after the weights it names: a process or machine that dies mid-save leaves the
previous complete checkpoint. A resume takes the newest checkpoint whose state parses and whose
weights match their digest; an unreadable one (truncated, zeroed, garbage) is skipped with a
warning for the one before it, and with none readable the run starts over from epoch 1 (its
epochs are logged again under the same warehouse keys). A write that fails because the disk is
full or read-only raises `StorageError`.

When `CIFAR_OPS_ARTIFACTS` is an object-store URL the directory above lives in the local scratch
dir (`settings.scratch_dir()`) and `storage.PublishedRun` mirrors it to `<url>/<run_id>/`: each
checkpoint is uploaded after it is saved (its parts, then a manifest), config.json, classes.json
and the models once written. A resume on an empty scratch dir first downloads the newest complete
checkpoint (sha256 checked), so a pod on another node continues where the last one stopped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras

from cifar_ops.config import RunConfig
from cifar_ops.config.schema import dump_hash
from cifar_ops.errors import ConfigError, StorageError
from cifar_ops.redaction import has_credentials, redact_url
from cifar_ops.settings import artifacts_location, scratch_dir
from cifar_ops.storage.published import PublishedRun
from cifar_ops.storage.urls import is_url, join

log = logging.getLogger(__name__)

STATE_SUFFIX = ".state.json"
WEIGHTS_SUFFIX = ".weights.h5"
LEGACY_STATE = "state.json"  # one state file for the newest checkpoint, as older versions wrote
TMP_PREFIX = "tmp-"
EARLY_STOPPING_BEST = "early-stopping-best.npz"  # ResumableEarlyStopping's best weights
# errno values that mean "this volume cannot take the write", not "this run is broken"
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


@dataclass(frozen=True)
class BatchLayout:
    """How a run's global batch is spread: recorded in config.json, checked on resume."""

    global_batch: int
    replicas: int = 1


@dataclass
class TrainingState:
    """Where training stands after the last completed epoch."""

    epochs_done: int = 0  # completed epochs, counted across phases
    phase: str = "train"  # phase the weights file was written in
    phase_start: int = 0  # epochs done when this phase began
    phase_done: bool = False  # the phase ended (best weights restored, if asked)
    weights_file: str | None = None  # name inside checkpoint/
    weights_sha256: str | None = None  # digest of that file, checked before a resume trusts it
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochRecord dicts, in order
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # resumable callback state

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        return cls(**json.loads(text))

    @property
    def order(self) -> tuple[int, bool]:
        """Newer checkpoints sort later: more epochs, and a phase's end after its last epoch."""
        return (self.epochs_done, self.phase_done)


class RunDirectory:
    """Paths of one run's artifacts, and durable writes and checked reads of its checkpoints."""

    def __init__(self, run_id: str, root: Path | None = None, remote: str | None = None):
        """`root`: the local parent directory; `remote`: the artifacts URL the run publishes to.

        Both default from the environment: a URL in `CIFAR_OPS_ARTIFACTS` is the remote and the
        scratch dir the root; a path is the root and nothing is published.
        """
        self.run_id = run_id
        if root is None:
            location = artifacts_location()
            if has_credentials(location):
                raise ConfigError(
                    f"CIFAR_OPS_ARTIFACTS={redact_url(location)} carries credentials: give them "
                    "through the environment (AWS_* from a Secret) or the pod's identity"
                )
            if is_url(location):
                root, remote = scratch_dir(), remote or location
            else:
                root = Path(location)
        self.root = root / run_id
        self.published = PublishedRun(join(remote, run_id)) if remote else None
        self.checkpoint_dir = self.root / "checkpoint"
        self.config_path = self.root / "config.json"
        self.classes_path = self.root / "classes.json"
        self.best_model_path = self.root / "best.keras"
        self.model_path = self.root / "model.keras"
        self._latest: Path | None = None  # state file of the newest complete checkpoint
        self._latest_weights: Path | None = None  # and the weights it names

    @property
    def model_uri(self) -> str:
        """Where the final model is kept: its object URL when published, else the local path."""
        if self.published is not None:
            return self.published.object_url(self.model_path.name)
        return str(self.model_path.resolve())

    def check(self, config: RunConfig, *, layout: BatchLayout | None = None) -> str:
        """The config hash this run id is recorded under; `ConfigError` when `config` is not its.

        Writes nothing locally but a published run's own config.json, fetched into the scratch
        dir: a process the warehouse then refuses leaves nothing that would stop the real run.
        A run recorded under an older schema keeps its hash when its stored config, less the
        retired `train.checkpoint` key, hashes as `config` does. `layout` (the global batch over
        its replicas) must be the one the run was started with: the schedule's steps and the
        learning rates follow it.
        """
        digest = config.config_hash()
        if self.published is not None and not self.config_path.exists():
            self.published.download(self.config_path.name, self.config_path)  # a resumed run's
        if not self.config_path.exists():
            return digest
        stored = _json_or_none(self.config_path)
        recorded = stored.get("config_hash") if isinstance(stored, dict) else None
        if not isinstance(recorded, str):
            log.warning("%s is unreadable; writing it again", self.config_path)
            return digest
        if recorded != digest and _stored_config_hash(stored.get("config")) != digest:
            raise ConfigError(
                f"run {self.run_id} was started with config hash {recorded}, this config "
                f"hashes to {digest}; resume it with its own config or use a new --run-id",
                path=str(self.config_path),
            )
        # before multi-replica training every run had one replica of train.batch_size
        started_batch = stored.get("global_batch", config.train.batch_size)
        started_replicas = stored.get("replicas", 1)
        if layout is not None and started_batch != layout.global_batch:
            raise ConfigError(
                f"run {self.run_id} was started with a global batch of {started_batch} on "
                f"{started_replicas} replica(s); this process has {layout.replicas} (global "
                f"batch {layout.global_batch}): resume it on {started_replicas} "
                "(resources.gpus, or CIFAR_OPS_REPLICAS) or use a new --run-id",
                path=str(self.config_path),
            )
        return recorded

    def create(
        self, config: RunConfig, class_names: list[str], *, layout: BatchLayout | None = None
    ) -> str:
        """Make the directory and write config.json and classes.json, after `check`; the hash.

        A run that keeps an older hash (see `check`) keeps its config.json as it was.
        """
        recorded = self.check(config, layout=layout)
        with storage_guard(self.root):
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if recorded == config.config_hash():
            payload: dict[str, Any] = {
                "config_hash": recorded,
                "config": config.model_dump(mode="json"),
            }
            if layout is not None:
                payload |= {"global_batch": layout.global_batch, "replicas": layout.replicas}
            write_text_atomically(self.config_path, json.dumps(payload, indent=2, sort_keys=True))
        write_text_atomically(self.classes_path, json.dumps(class_names))
        if self.published is not None:
            for path in (self.config_path, self.classes_path):
                self.published.upload(path, path.name)
        return recorded

    def load_state(self) -> TrainingState | None:
        """The newest readable checkpoint, or None for a fresh start.

        Unreadable checkpoints are skipped with a warning; when there were some but none is
        readable, the warning says the run starts over. A published run first downloads its
        newest complete checkpoint from the store when that is newer than any here.
        """
        if self.published is not None:
            self.published.restore_newest(self.root, self._newest_local_order())
        candidates: list[tuple[TrainingState, Path]] = []
        skipped = 0
        for path in self._state_files():
            state, problem = self._read_checkpoint(path)
            if state is None:
                skipped += 1
                log.warning("checkpoint %s is unreadable (%s); skipping it", path, problem)
            else:
                candidates.append((state, path))
        candidates.sort(key=lambda item: item[0].order, reverse=True)
        if not candidates:
            if skipped:
                log.warning(
                    "no readable checkpoint in %s: run %s starts over from epoch 1",
                    self.checkpoint_dir,
                    self.run_id,
                )
            self._latest = self._latest_weights = None
            return None
        state, path = candidates[0]
        if skipped:
            log.warning(
                "run %s resumes from the checkpoint before: %s (%d epochs done)",
                self.run_id,
                path.name,
                state.epochs_done,
            )
        self._latest, self._latest_weights = path, self.weights_path(state)
        return state

    def weights_path(self, state: TrainingState) -> Path:
        assert state.weights_file is not None
        return self.checkpoint_dir / state.weights_file

    def save(self, model: keras.Model, state: TrainingState) -> None:
        """Write the weights (with optimizer state), then their state; keep the one before."""
        suffix = "end" if state.phase_done else "epoch"
        stem = f"{state.phase}-{suffix}-{state.epochs_done:04d}"
        data = weights_bytes(model)
        write_bytes_atomically(self.checkpoint_dir / f"{stem}{WEIGHTS_SUFFIX}", data)
        state.weights_file = f"{stem}{WEIGHTS_SUFFIX}"
        state.weights_sha256 = hashlib.sha256(data).hexdigest()
        state_path = self.checkpoint_dir / f"{stem}{STATE_SUFFIX}"
        write_text_atomically(state_path, json.dumps(asdict(state), allow_nan=True))
        keep = {state_path, self.checkpoint_dir / state.weights_file}
        if self._latest is not None and self._latest != state_path:
            keep |= {self._latest, *([self._latest_weights] if self._latest_weights else [])}
        previous = self._latest
        self._latest, self._latest_weights = state_path, self.weights_path(state)
        self._prune(keep)
        if self.published is not None:
            self._publish(stem, state, previous)

    def save_model(self, model: keras.Model) -> None:
        """Write model.keras durably: a reader never finds half a model under the final name."""
        tmp = self.model_path.with_name(f"{TMP_PREFIX}{self.model_path.name}")
        with storage_guard(self.model_path):
            try:
                model.save(tmp)
                with tmp.open("rb+") as saved:
                    os.fsync(saved.fileno())
                os.replace(tmp, self.model_path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_directory(self.root)
        if self.published is not None:
            self.published.upload(self.model_path, self.model_path.name)
            if self.best_model_path.exists():
                self.published.upload(self.best_model_path, self.best_model_path.name)

    def _publish(self, stem: str, state: TrainingState, previous: Path | None) -> None:
        """Upload this checkpoint (weights, state, the best model and best weights so far)."""
        assert self.published is not None and state.weights_file is not None
        parts = [
            self.checkpoint_dir / f"{stem}{STATE_SUFFIX}",
            self.checkpoint_dir / state.weights_file,
        ]
        parts += [
            p
            for p in (self.checkpoint_dir / EARLY_STOPPING_BEST, self.best_model_path)
            if p.exists()
        ]
        self.published.publish_checkpoint(
            self.root, stem, state.order, [str(p.relative_to(self.root)) for p in parts]
        )
        keep = {stem}
        if previous is not None and previous.name.endswith(STATE_SUFFIX):
            keep.add(previous.name.removesuffix(STATE_SUFFIX))
        self.published.prune_checkpoints(keep)

    def _newest_local_order(self) -> tuple[int, bool] | None:
        orders = [
            state.order
            for path in self._state_files()
            if (state := self._read_checkpoint(path)[0]) is not None
        ]
        return max(orders) if orders else None

    def _state_files(self) -> list[Path]:
        if not self.checkpoint_dir.is_dir():
            return []
        files = sorted(self.checkpoint_dir.glob(f"*{STATE_SUFFIX}"))
        legacy = self.checkpoint_dir / LEGACY_STATE
        return [*files, legacy] if legacy.exists() else files

    def _read_checkpoint(self, path: Path) -> tuple[TrainingState | None, str]:
        """The state in `path` if it parses and its weights are there and intact, else a reason."""
        try:
            state = TrainingState.from_json(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            return None, f"state: {type(exc).__name__}: {exc}"
        if not state.weights_file:
            return None, "state names no weights file"
        weights = self.checkpoint_dir / state.weights_file
        try:
            if state.weights_sha256 is not None:
                digest = _sha256(weights)
                if digest != state.weights_sha256:
                    return None, f"{weights.name} does not match its recorded sha256"
            elif not h5py.is_hdf5(weights):
                return None, f"{weights.name} is not an HDF5 file"
        except OSError as exc:
            return None, f"{weights.name}: {exc.strerror or exc}"
        return state, ""

    def _prune(self, keep: set[Path]) -> None:
        """Delete every checkpoint file but `keep` (older, unreadable or half-written ones)."""
        for path in self.checkpoint_dir.iterdir():
            name = path.name
            checkpoint_file = name.endswith((STATE_SUFFIX, WEIGHTS_SUFFIX)) or name == LEGACY_STATE
            if (checkpoint_file or name.startswith(TMP_PREFIX)) and path not in keep:
                path.unlink(missing_ok=True)


def weights_bytes(model: keras.Model) -> bytes:
    """The model's `.weights.h5` (weights and optimizer state), built in memory.

    `model.save_weights` writes through the HDF5 C library; on a full disk that write fails inside
    C and leaves an h5py handle that crashes the interpreter when it is freed. Built in memory,
    every disk write is Python's own, where a full disk is a plain `OSError`. `model.load_weights`
    reads the file as if `save_weights` had written it.
    """
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(
            model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
        )
    finally:
        store.close()
    return buffer.getvalue()


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` durably: temp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with storage_guard(path):
        try:
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # frees what a full disk took
            raise
        fsync_directory(path.parent)


def write_text_atomically(path: Path, text: str) -> None:
    write_bytes_atomically(path, text.encode())


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def storage_guard(path: Path) -> Iterator[None]:
    """Turn a full, over-quota or read-only volume under `path` into a `StorageError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        reason = exc.strerror or os.strerror(exc.errno)
        raise StorageError(
            f"{path}: cannot write ({reason}); the last complete checkpoint is kept: make room "
            "and run the same run id again to resume"
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stored_config_hash(dump: Any) -> str | None:
    """The hash of a stored config dump as today's schema reads it (retired keys dropped)."""
    if not isinstance(dump, dict):
        return None
    train = dump.get("train")
    if isinstance(train, dict) and "checkpoint" in train:
        dump = {**dump, "train": {k: v for k, v in train.items() if k != "checkpoint"}}
    return dump_hash(dump)


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None

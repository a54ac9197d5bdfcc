"""A finished run's model files, wherever the run kept them: pull them here, or load one by name.

A model reference is a local `.keras` path, an object URL (`s3://.../model.keras`), or a run id
(or unique prefix) whose warehouse `artifact_uri` names the model. The run's `classes.json` and
`config.json` lie beside `model.keras` and travel with it, so a pulled model predicts with its
class names and evaluates on the data its run used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from cifar_ops.errors import ModelError, StorageError
from cifar_ops.redaction import redact_url
from cifar_ops.settings import data_cache_dir
from cifar_ops.storage import objects
from cifar_ops.storage.urls import is_url, join

MODEL_FILE = "model.keras"
RUN_FILES = (MODEL_FILE, "best.keras", "classes.json", "config.json")
RUN_ID_PREFIX = re.compile(r"[0-9a-f]{4,32}")
MODELS_SCHEME = "models:/"  # a registered version: cifar_ops.warehouse.registry resolves it


def run_artifact(reference: str) -> tuple[str, str]:
    """The full run id and model location of a run id or prefix (its warehouse `artifact_uri`),
    or of a registered version (`models:/NAME/VERSION`, `models:/NAME@ALIAS`)."""
    from cifar_ops.warehouse import open_store

    if reference.startswith(MODELS_SCHEME):
        from cifar_ops.warehouse.registry import resolve_reference

        version = resolve_reference(reference)
        return version.run_id, version.model_uri

    with open_store() as store:
        summary = store.get_run(reference).summary
    if not summary.artifact_uri:
        raise ModelError(
            f"run {summary.run_id} has no model ({summary.status}); only a succeeded run has one"
        )
    return summary.run_id, summary.artifact_uri


def model_location(reference: str) -> str:
    """A path or URL of a `.keras` model for `reference` (a path, an object URL, a run id or a
    registered version `models:/NAME/VERSION` or `models:/NAME@ALIAS`)."""
    if reference.startswith(MODELS_SCHEME):
        return run_artifact(reference)[1]
    if is_url(reference) or reference.endswith(".keras") or Path(reference).exists():
        return reference
    if RUN_ID_PREFIX.fullmatch(reference):
        return run_artifact(reference)[1]
    raise ModelError(
        f"{reference}: not a .keras file, an object URL (s3://...), a run id or a registered "
        "model (models:/NAME@ALIAS, models:/NAME/VERSION); pass one of them"
    )


def local_model(reference: str) -> Path:
    """A local `.keras` file for `reference`; a remote one is downloaded with its run files."""
    location = model_location(reference)
    if not is_url(location):
        return Path(location)
    cache = data_cache_dir() / "models" / hashlib.sha256(location.encode()).hexdigest()[:16]
    pull(location, cache, names=("classes.json", "config.json"))
    return cache / Path(location).name


def pull(location: str, dest: Path, names: tuple[str, ...] = RUN_FILES) -> list[Path]:
    """Copy the model at `location` and the run files beside it into `dest`; returns them.

    The model itself must be there (`ModelError` otherwise); the others are copied when present.
    """
    dest.mkdir(parents=True, exist_ok=True)
    remote = is_url(location)
    model_name = location.rstrip("/").rsplit("/", 1)[-1] if remote else Path(location).name
    folder = location.rstrip("/").rsplit("/", 1)[0] if remote else str(Path(location).parent)
    fetched = []
    for name in dict.fromkeys((model_name, *names)):
        target = dest / name
        found = (
            objects.download(join(folder, name), target)
            if remote
            else _copy(Path(folder) / name, target)
        )
        if found:
            fetched.append(target)
        elif name == model_name:
            raise ModelError(
                f"{redact_url(location)}: no such model; was the run's artifacts location "
                "removed or moved?"
            )
    return fetched


def _copy(source: Path, target: Path) -> bool:
    if not source.is_file():
        return False
    tmp = target.with_name(f"{objects.TMP_PREFIX}{target.name}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot copy {source} to {target}: {exc.strerror or exc}") from None
    return True

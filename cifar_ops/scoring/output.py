"""A scoring's rows as `scores.csv` and `scores.parquet`, in a local folder or under a prefix."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cifar_ops import settings
from cifar_ops.errors import StorageError
from cifar_ops.storage import objects
from cifar_ops.storage.urls import is_url, join

FILES = ("scores.csv", "scores.parquet")


def default_location(scoring_id: str) -> str:
    """`<artifacts>/scores/<scoring id>`: beside the runs, local or in the bucket."""
    return join(settings.artifacts_location(), "scores", scoring_id)


def write_files(columns: list[str], rows: list[tuple[Any, ...]], location: str) -> list[str]:
    """Write both files (each replaced whole: a temp name, then renamed or uploaded)."""
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=columns)
    written = []
    with tempfile.TemporaryDirectory(prefix="cifar-ops-scores-") as scratch:
        for name in FILES:
            local = Path(scratch) / name
            if name.endswith(".csv"):
                frame.to_csv(local, index=False)
            else:
                frame.to_parquet(local, index=False)
            target = join(location, name)
            if is_url(location):
                objects.upload(local, target)
            else:
                _move(local, Path(location) / name)
            written.append(target)
    return written


def _move(local: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f"{objects.TMP_PREFIX}{target.name}")
        staged.write_bytes(local.read_bytes())
        staged.replace(target)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from None

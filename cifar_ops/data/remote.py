"""An image folder in an object store (`data.dir: s3://bucket/prefix/`), via a local mirror.

The objects are copied into `CIFAR_OPS_DATA_CACHE/objects/<hash of the URL>/` (only those new or
changed since the last copy: size and modification time), each given its object's modification
time. The folder is then read like a local one, so the decoded-images cache (keyed by path, size
and mtime) is hit by every later run on the node, whichever pod made it. Refs name the objects.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cifar_ops import settings
from cifar_ops.data.images import IMAGE_SUFFIXES
from cifar_ops.data.splits import Part, SourceData
from cifar_ops.errors import DataError
from cifar_ops.redaction import redact_url
from cifar_ops.storage import objects
from cifar_ops.storage.urls import join


def mirror_dir(url: str) -> Path:
    key = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return settings.data_cache_dir() / "objects" / key


def mirror_folder(url: str) -> Path:
    """Bring the folder's images into the local mirror; returns the mirror's root."""
    listing = {
        rel: info
        for rel, info in objects.list_files(url).items()
        if Path(rel).suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in Path(rel).parts)
    }
    if not listing:
        raise DataError(
            f"data.dir {redact_url(url)}: no images under it; lay it out as "
            "<root>/<split>/<class>/*.jpg (split: train, test, validation) or <root>/<class>/*.jpg"
        )
    root = mirror_dir(url)
    wanted = {rel: (int(info.get("size") or 0), _mtime_ns(info)) for rel, info in listing.items()}
    stale = [rel for rel, stamp in wanted.items() if not _current(root / rel, *stamp)]
    objects.download_many([(join(url, rel), root / rel) for rel in stale])
    for rel in stale:
        mtime = wanted[rel][1]
        if mtime:
            os.utime(root / rel, ns=(mtime, mtime))
    for path in [p for p in root.rglob("*") if p.is_file()]:
        if path.relative_to(root).as_posix() not in wanted:
            path.unlink(missing_ok=True)  # deleted from the bucket: not a class any more
    return root


def load_remote_folder(url: str, image_size: int) -> SourceData:
    """The folder at `url` as `load_folder` reads a local one; refs are the objects' URLs."""
    from cifar_ops.data.folder import load_folder

    root = mirror_folder(url)
    source = load_folder(str(root), image_size)
    prefix = str(root) + os.sep
    parts = {
        name: Part(
            labels=part.labels,
            load=part.load,
            refs=[join(url, Path(ref[len(prefix) :]).as_posix()) for ref in part.refs or []],
        )
        for name, part in source.parts.items()
    }
    return SourceData(class_names=source.class_names, parts=parts)


def _current(path: Path, size: int, mtime_ns: int) -> bool:
    """Whether the mirrored copy is the object's (same size and, when known, same mtime)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return stat.st_size == size and (not mtime_ns or stat.st_mtime_ns == mtime_ns)


def _mtime_ns(info: dict[str, Any]) -> int:
    """The object's modification time in ns (s3fs: LastModified; others: mtime), else 0."""
    value = info.get("LastModified") or info.get("mtime") or info.get("updated")
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000_000
    if isinstance(value, int | float):
        return int(value) * 1_000_000_000
    return 0

"""An image folder in an object store (`data.dir: s3://bucket/prefix/`), decoded once per content.

The folder's listing (each image's path, size and ETag) is its content fingerprint. The decoded
folder (every split's uint8 images, labels and refs, and the class names) is one `.npz` named
after that fingerprint and the image size, looked for in this order:
  1. the node's data cache, `CIFAR_OPS_DATA_CACHE/decoded/folder-<key>.npz`;
  2. the artifact store, `<CIFAR_OPS_ARTIFACTS>/data-cache/folder-<key>.npz`, when that is a URL
     (so the trial pods of a search, each with an empty cache, download one file);
  3. else the images are copied into a local mirror (`objects/<hash of the URL>/`, only new or
     changed ones), decoded, and the `.npz` is written to the node's cache and uploaded once.
A changed, added or deleted image changes the listing, hence the key. Refs name the objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from cifar_ops import settings
from cifar_ops.data.images import IMAGE_SUFFIXES, load_image_files
from cifar_ops.data.splits import Part, SourceData
from cifar_ops.errors import DataError, StorageError
from cifar_ops.redaction import redact_url
from cifar_ops.storage import objects
from cifar_ops.storage.urls import is_url, join

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the .npz layout changes


def load_remote_folder(url: str, image_size: int) -> SourceData:
    """The folder at `url` as `load_folder` reads a local one; refs are the objects' URLs."""
    url = url.rstrip("/") + "/"
    listing = image_listing(url)
    key = content_key(listing, image_size)
    local = settings.data_cache_dir() / "decoded" / f"folder-{key}.npz"
    source = _read_decoded(local, url)
    if source is None and _fetch_shared(key, local):
        source = _read_decoded(local, url)
    if source is None:
        source = _decode(url, listing, image_size)
        _write_decoded(local, source, url)
        _share(key, local)
    return source


def image_listing(url: str) -> dict[str, dict[str, Any]]:
    """Relative path -> listing entry of every image under `url` (hidden paths left out)."""
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
    return listing


def content_key(listing: dict[str, dict[str, Any]], image_size: int) -> str:
    """SHA-256 over every image's path, size and ETag (else mtime), and the decode settings."""
    entries = sorted(
        (rel, int(info.get("size") or 0), str(info.get("ETag") or _mtime_ns(info)))
        for rel, info in listing.items()
    )
    payload = json.dumps([CACHE_FORMAT, image_size, entries])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def mirror_dir(url: str) -> Path:
    key = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return settings.data_cache_dir() / "objects" / key


def mirror_folder(url: str, listing: dict[str, dict[str, Any]]) -> Path:
    """Copy the listed images into the local mirror (only new or changed ones); its root."""
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


def _decode(url: str, listing: dict[str, dict[str, Any]], image_size: int) -> SourceData:
    """Mirror, read the layout as a local folder, and decode every image of every split."""
    from cifar_ops.data.folder import load_folder

    root = mirror_folder(url, listing)
    layout = load_folder(str(root), image_size)
    prefix = str(root) + os.sep
    parts = {}
    for name, part in layout.parts.items():
        paths = [Path(ref) for ref in part.refs or []]
        images = load_image_files(paths, image_size, cache=False)  # cached whole, below
        refs = [join(url, ref[len(prefix) :].replace(os.sep, "/")) for ref in part.refs or []]
        parts[name] = _part(part.labels, images, refs)
    return SourceData(class_names=layout.class_names, parts=parts)


def _part(labels: np.ndarray, images: np.ndarray, refs: list[str]) -> Part:
    return Part(labels=np.asarray(labels, dtype=np.int64), load=lambda idx: images[idx], refs=refs)


def _write_decoded(target: Path, source: SourceData, url: str) -> None:
    """The decoded folder as one `.npz` (refs relative to `url`), written under a temp name."""
    arrays: dict[str, np.ndarray] = {"class_names": np.array(source.class_names, dtype=str)}
    for name, part in source.parts.items():
        arrays[f"{name}.labels"] = part.labels
        arrays[f"{name}.images"] = part.load(np.arange(len(part)))
        arrays[f"{name}.refs"] = np.array([r[len(url) :] for r in part.refs or []], dtype=str)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
        os.replace(tmp, target)
    except OSError as exc:  # a full or read-only cache costs speed, not the run
        log.warning("cannot cache the decoded folder at %s: %s", target, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _read_decoded(path: Path, url: str) -> SourceData | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            names = [str(n) for n in stored["class_names"]]
            splits = {k.split(".", 1)[0] for k in stored.files if "." in k}
            parts = {
                split: _part(
                    stored[f"{split}.labels"],
                    stored[f"{split}.images"],
                    [url + str(r) for r in stored[f"{split}.refs"]],
                )
                for split in splits
            }
    except (OSError, ValueError, KeyError) as exc:
        log.warning("the decoded folder %s is unreadable (%s); decoding again", path, exc)
        path.unlink(missing_ok=True)
        return None
    return SourceData(class_names=names, parts=parts)


def _shared_url(key: str) -> str | None:
    location = settings.artifacts_location()
    return join(location, "data-cache", f"folder-{key}.npz") if is_url(location) else None


def _fetch_shared(key: str, local: Path) -> bool:
    """Download the store's copy of the decoded folder, if there is one."""
    shared = _shared_url(key)
    if shared is None:
        return False
    try:
        return objects.download(shared, local)
    except (StorageError, OSError) as exc:
        log.warning("%s; decoding the folder here", exc)
        return False


def _share(key: str, local: Path) -> None:
    """Upload the decoded folder once, for the pods that come after."""
    shared = _shared_url(key)
    if shared is None or not local.is_file():
        return
    try:
        if not objects.exists(shared):
            objects.upload(local, shared)
    except StorageError as exc:
        log.warning("%s; the decoded folder stays on this node only", exc)


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

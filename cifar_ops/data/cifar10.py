"""The official CIFAR-10 python archive: find it, or download and checksum it; read its pickles.

Looked for, in order, in `data.dir` and then the data cache: an extracted `cifar-10-batches-py/`
or `cifar-10-python.tar.gz`. Missing everywhere, it is downloaded into `data.dir` (when given)
or the data cache, from `data.archive` when set (an object URL or a mirror), else from Toronto.
The archive is read in place; nothing is extracted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cifar_ops import settings
from cifar_ops.data.splits import Part, SourceData
from cifar_ops.errors import DataError
from cifar_ops.redaction import redact_url
from cifar_ops.storage import objects
from cifar_ops.storage.urls import is_url

# Module attributes (not constants baked into functions) so a mirror or a test can point elsewhere.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
EXTRACTED_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
DOWNLOAD_TIMEOUT_S = 30


def load_cifar10(data_dir: str | None, *, archive: str | None = None) -> SourceData:
    """The 50,000 training and 10,000 test images of the official archive.

    `archive` (`data.archive`) is where to fetch it when it is not here: an object URL
    (s3://bucket/cifar-10-python.tar.gz) or a mirror's https URL, for a cluster with no internet.
    """
    location = locate_or_download(data_dir, archive=archive)
    batches = dict(_read_batches(location))
    meta = batches.pop("batches.meta", None)
    if meta is None or any(name not in batches for name in (*TRAIN_BATCHES, TEST_BATCH)):
        raise DataError(
            f"{location}: not a complete CIFAR-10 python archive (needs batches.meta, "
            f"{', '.join(TRAIN_BATCHES)}, {TEST_BATCH}); delete it and let cifar-ops download "
            f"{CIFAR10_URL} again"
        )
    class_names = [_text(name) for name in meta[b"label_names"]]
    train = [_arrays(batches[name], location) for name in TRAIN_BATCHES]
    test_images, test_labels = _arrays(batches[TEST_BATCH], location)
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return SourceData(
        class_names=class_names,
        parts={
            "train": Part.from_arrays(train_images, train_labels),
            "test": Part.from_arrays(test_images, test_labels),
        },
    )


def locate_or_download(data_dir: str | None, *, archive: str | None = None) -> Path:
    """The extracted folder or archive to read, downloading the archive if it is nowhere."""
    if is_url(data_dir):
        raise DataError(
            f"data.dir {redact_url(data_dir or '')}: the cifar10 source reads a local folder; "
            "put the archive's URL in data.archive (or use data.source: folder for images)"
        )
    cache = settings.data_cache_dir()
    candidates = [Path(data_dir).expanduser()] if data_dir else []
    candidates.append(cache)
    for folder in candidates:
        if (folder / EXTRACTED_NAME / TEST_BATCH).is_file():
            return folder / EXTRACTED_NAME
        if folder.name == EXTRACTED_NAME and (folder / TEST_BATCH).is_file():
            return folder
        if (folder / ARCHIVE_NAME).is_file():
            return folder / ARCHIVE_NAME
        if folder.is_file() and folder.name.endswith(".tar.gz"):
            return folder
    return download_archive(candidates[0], url=archive or CIFAR10_URL, md5=CIFAR10_MD5)


def download_archive(folder: Path, *, url: str, md5: str) -> Path:
    """Download `url` into `folder`, verify its MD5, and only then give it its final name."""
    target = folder / ARCHIVE_NAME
    how_to_supply = (
        f"put {ARCHIVE_NAME} (md5 {md5}, from {url}) or its extracted {EXTRACTED_NAME}/ into "
        f"{folder} (or point data.dir at the folder holding it), or use data.source=folder "
        "with data.dir=<root>/<split>/<class>/*.jpg"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".part")
    except OSError as exc:
        raise DataError(
            f"{folder}: cannot write the download there ({exc}); {how_to_supply}"
        ) from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with (
            os.fdopen(fd, "wb") as out,
            _open(url) as response,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"{redact_url(url)}: downloaded file has md5 {digest.hexdigest()}, expected "
                f"{md5} (a broken or tampered download; it was deleted); retry, or {how_to_supply}"
            )
        os.replace(tmp, target)
        return target
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download CIFAR-10 from {redact_url(url)} ({reason}); offline? {how_to_supply}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _open(url: str) -> contextlib.AbstractContextManager[Any]:
    """A binary stream of `url`: http(s) through urllib, an object store through fsspec."""
    if not is_url(url) or url.lower().startswith(("http://", "https://")):
        return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    fs, path = objects.filesystem(url)
    with objects.failing_as_storage("read", url):
        return fs.open(path, "rb")


def _read_batches(location: Path) -> Iterator[tuple[str, dict[bytes, Any]]]:
    """(name, unpickled dict) for each batch file, from the folder or straight from the tar."""
    try:
        if location.is_dir():
            for path in sorted(location.iterdir()):
                if path.name == "batches.meta" or path.name.startswith(("data_batch", "test")):
                    yield path.name, _unpickle(path.read_bytes())
            return
        with tarfile.open(location, "r:gz") as archive:
            for member in archive:
                name = Path(member.name).name
                if member.isfile() and (name == "batches.meta" or name in _BATCH_NAMES):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield name, _unpickle(handle.read())
    except (OSError, tarfile.TarError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(
            f"{location}: cannot read the CIFAR-10 archive ({exc}); delete it so cifar-ops "
            f"downloads {CIFAR10_URL} again, or supply a good copy (md5 {CIFAR10_MD5})"
        ) from None


_BATCH_NAMES = frozenset((*TRAIN_BATCHES, TEST_BATCH))


def _unpickle(payload: bytes) -> dict[bytes, Any]:
    return pickle.loads(payload, encoding="bytes")  # noqa: S301 - the official format is pickle


def _arrays(batch: dict[bytes, Any], location: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 and (N,) int64 from one batch dict (rows are 3072 CHW bytes)."""
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (KeyError, ValueError) as exc:
        raise DataError(f"{location}: a batch is not in the CIFAR-10 format ({exc})") from None
    return np.ascontiguousarray(images), labels


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

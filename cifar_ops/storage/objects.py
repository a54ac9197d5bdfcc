"""Single-object reads and writes through fsspec, every failure a `StorageError` (exit 8).

Credentials are never passed in: fsspec's backends take them from the standard environment
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, a web-identity
token), a mounted Secret or the pod's cloud identity. Messages carry the URL through
`redact_url`, never a key. `s3://` needs s3fs (a dependency); `gs://` gcsfs and `az://` adlfs,
installed by whoever uses them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifar_ops.errors import StorageError
from cifar_ops.redaction import redact_url

# The packages fsspec needs per scheme, named in the error when one is missing.
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs"}
TMP_PREFIX = "tmp-"


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for `url` and the path inside it."""
    import fsspec

    scheme = url.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        package = BACKENDS.get(scheme, "the fsspec backend for it")
        raise StorageError(
            f"{redact_url(url)}: cannot open {scheme}:// ({type(exc).__name__}); install "
            f"{package} (pip install {package})"
        ) from None


@contextlib.contextmanager
def failing_as_storage(action: str, url: str) -> Iterator[None]:
    """Turn a backend's error into a one-line `StorageError` that names the object, not a key."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - backends raise their own types (botocore, aiohttp)
        detail = redact_url(str(exc).splitlines()[0] if str(exc) else "")[:300]
        raise StorageError(
            f"{redact_url(url)}: cannot {action} ({type(exc).__name__}: {detail}); check the "
            "bucket, the network and the credentials in the environment (AWS_* or the pod's "
            "identity)"
        ) from None


def upload(local: Path, url: str) -> None:
    """Copy a local file to `url` (one object, replaced whole)."""
    fs, path = filesystem(url)
    with failing_as_storage("upload", url):
        fs.put_file(str(local), path)


def upload_bytes(data: bytes, url: str) -> None:
    fs, path = filesystem(url)
    with failing_as_storage("upload", url):
        fs.pipe_file(path, data)


def read_bytes(url: str) -> bytes | None:
    """The object's bytes, or None when there is no such object."""
    fs, path = filesystem(url)
    with failing_as_storage("read", url):
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            return None


def download(url: str, local: Path) -> bool:
    """Copy the object to `local` (a temporary name, then renamed); False when it is absent."""
    fs, path = filesystem(url)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f"{TMP_PREFIX}{local.name}")
    with failing_as_storage("download", url):
        try:
            fs.get_file(path, str(tmp))
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return False
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, local)
    return True


def download_many(pairs: list[tuple[str, Path]]) -> None:
    """Copy many objects of one store at once (the backend's concurrent batch), each renamed in."""
    if not pairs:
        return
    fs, _ = filesystem(pairs[0][0])
    staged = [(url, local, local.with_name(f"{TMP_PREFIX}{local.name}")) for url, local in pairs]
    for _, local, _ in staged:
        local.parent.mkdir(parents=True, exist_ok=True)
    try:
        with failing_as_storage("download", pairs[0][0].rsplit("/", 1)[0] + "/"):
            fs.get([filesystem(url)[1] for url, _, _ in staged], [str(t) for _, _, t in staged])
        for _, local, tmp in staged:
            os.replace(tmp, local)
    finally:
        for _, _, tmp in staged:
            tmp.unlink(missing_ok=True)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    with failing_as_storage("look up", url):
        fs.invalidate_cache(path)
        return bool(fs.exists(path))


def list_names(url: str) -> list[str]:
    """Names directly under the prefix `url` (files and sub-prefixes), sorted; [] when none."""
    fs, path = filesystem(url)
    with failing_as_storage("list", url):
        fs.invalidate_cache(path)
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
    return sorted({str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries})


def list_files(url: str) -> dict[str, dict[str, Any]]:
    """Every object under the prefix `url`: relative path -> listing entry (size, ETag)."""
    fs, path = filesystem(url)
    root = path.rstrip("/")
    with failing_as_storage("list", url):
        fs.invalidate_cache(root)
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
    return {
        name[len(root) + 1 :]: info
        for name, info in found.items()
        if name.startswith(root + "/") and info.get("type", "file") == "file"
    }


def remove(url: str, *, recursive: bool = False) -> None:
    """Delete an object (or, with `recursive`, a prefix); nothing there is not an error."""
    fs, path = filesystem(url)
    with failing_as_storage("delete", url), contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=recursive)

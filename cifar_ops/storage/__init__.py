"""Artifacts and data behind fsspec URLs: a local path, or an object store (s3://, gs://, az://).

`urls` tells a URL from a path and joins them; `objects` reads and writes single objects with
errors as `StorageError` (URLs redacted); `published` keeps a run's checkpoints and models in the
store, each checkpoint visible only once complete (its parts first, then a manifest).
"""

from cifar_ops.storage.objects import (
    download,
    exists,
    list_names,
    read_bytes,
    remove,
    upload,
    upload_bytes,
)
from cifar_ops.storage.urls import is_url, join

__all__ = [
    "download",
    "exists",
    "is_url",
    "join",
    "list_names",
    "read_bytes",
    "remove",
    "upload",
    "upload_bytes",
]

"""The images to score: every image file under a local folder or an object-store prefix.

Paths are relative to the root, `/`-separated and sorted, so the same folder lists the same keys
wherever it is mounted or mirrored; bytes are read a batch at a time (the bucket's concurrent
`cat`), never the whole prefix at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifar_ops.data.images import IMAGE_SUFFIXES
from cifar_ops.errors import DataError
from cifar_ops.redaction import redact_url
from cifar_ops.storage import objects
from cifar_ops.storage.urls import is_url, join


@dataclass(frozen=True)
class ImageSource:
    """A root (absolute path or URL without a trailing slash) and its image files under it."""

    root: str
    paths: list[str]

    @property
    def remote(self) -> bool:
        return is_url(self.root)

    def read(self, names: list[str]) -> list[bytes | str]:
        """Each file's bytes, or a one-line reason it could not be read (it is skipped)."""
        if not self.remote:
            return [_read_local(Path(self.root) / name) for name in names]
        fs, _ = objects.filesystem(self.root)
        urls = [join(self.root, name) for name in names]
        keys = [objects.filesystem(url)[1] for url in urls]
        with objects.failing_as_storage("read", self.root + "/"):
            found = fs.cat(keys, on_error="return")
        return [
            value if isinstance(value, bytes) else f"cannot read ({type(value).__name__})"
            for value in (found.get(key) for key in keys)
        ]


def open_source(location: str) -> ImageSource:
    """List the image files under `location`; `DataError` if it is missing or holds none."""
    if is_url(location):
        root = location.rstrip("/")
        paths = sorted(name for name in objects.list_files(root) if _is_image(name))
    else:
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise DataError(f"{location}: no such data directory")
        root = str(folder.resolve())
        paths = sorted(
            path.relative_to(folder).as_posix()
            for path in folder.rglob("*")
            if _is_image(path.name) and path.is_file()
        )
    if not paths:
        raise DataError(
            f"{redact_url(location)}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under it"
        )
    return ImageSource(root, paths)


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith(".")


def _read_local(path: Path) -> bytes | str:
    try:
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read ({exc.strerror or type(exc).__name__})"

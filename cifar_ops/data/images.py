"""Image files to uint8 arrays: one file (any mode PIL opens), or many in a thread pool, cached.

Decoding 50,000 JPEGs takes tens of seconds on two cores; the decoded arrays are cached as an
`.npz` in the data cache, keyed by the file list with sizes and mtimes, so a second run (or a
retried pod) reads one file instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from cifar_ops import settings
from cifar_ops.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})


def load_image_file(path: str | Path | BinaryIO, size: int) -> np.ndarray:
    """Any image PIL opens (JPEG, PNG, grayscale, RGBA, palette) as RGB uint8 (size, size, 3);
    `path` may also be an open binary file (an upload, an object's bytes).

    Transparent pixels are composited onto white, the usual background of a cut-out upload;
    other sizes are resized (antialiased bilinear), squashing rather than cropping.
    """
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is large
            image = ImageOps.exif_transpose(opened)
            image.load()
            rgb = _to_rgb(image)
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); replace or delete the file") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def load_image_files(paths: Sequence[Path], size: int, *, cache: bool = True) -> np.ndarray:
    """Decode many files into (N, size, size, 3) uint8, in a thread pool, cached on disk."""
    if not paths:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    cache_file = _cache_path(paths, size) if cache else None
    if cache_file is not None and cache_file.is_file():
        try:
            with np.load(cache_file) as stored:
                return stored["images"]
        except (OSError, ValueError, KeyError):
            cache_file.unlink(missing_ok=True)  # a torn or foreign file: decode again
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    workers = min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for i, array in enumerate(pool.map(lambda p: load_image_file(p, size), paths)):
            images[i] = array
    if cache_file is not None:
        _write_atomically(cache_file, images)
    return images


def _cache_path(paths: Sequence[Path], size: int) -> Path:
    listing = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            raise DataError(f"{path}: image file vanished while reading the data set") from None
        listing.append((os.fspath(path), stat.st_size, stat.st_mtime_ns))
    key = hashlib.sha256(json.dumps([size, listing]).encode()).hexdigest()[:32]
    return settings.data_cache_dir() / "decoded" / f"{key}.npz"


def _write_atomically(target: Path, images: np.ndarray) -> None:
    """Write to a temp file and rename, so a concurrent reader never sees half a cache."""
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, images=images)
        os.replace(tmp, target)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)  # a read-only or full cache costs speed, not the run

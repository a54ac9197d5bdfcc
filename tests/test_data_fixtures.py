"""Builders of small on-disk data sets for the data tests (no tests here): folders, fake CIFAR."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

# One solid colour per class, so a test can tell which class a decoded image came from.
CLASS_COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "frog": (30, 30, 200)}


def write_image(path: Path, colour: tuple[int, int, int], *, size=(8, 8), mode="RGB") -> Path:
    """A solid-colour image file in `mode`; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def make_folder(root: Path, counts: dict[str, int], *, split: str | None = "train") -> Path:
    """`root/<split>/<class>/i.png|jpg` (split None: no split level), mixed formats and sizes."""
    base = root / split if split else root
    for class_name, count in counts.items():
        colour = CLASS_COLOURS[class_name]
        for i in range(count):
            suffix = ".png" if i % 2 else ".jpg"
            size = (8 + i % 3 * 5, 8 + i % 2 * 7)  # any size; the loader resizes
            write_image(base / class_name / f"{i:03d}{suffix}", colour, size=size)
    return root


def cifar_batch(count: int, seed: int) -> dict[bytes, object]:
    """A batch dict exactly as the official pickles hold it (bytes keys, CHW rows of 3072)."""
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in np.arange(count) % 10]
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    data[:, :1024] = np.array(labels, dtype=np.uint8)[:, None] * 20  # red plane encodes the label
    return {b"batch_label": b"fake", b"labels": labels, b"data": data, b"filenames": []}


def make_cifar_archive(folder: Path, per_batch: int = 20) -> tuple[Path, str]:
    """A tiny `cifar-10-python.tar.gz` in the official layout; returns (path, md5)."""
    folder.mkdir(parents=True, exist_ok=True)
    members = {"batches.meta": {b"label_names": [f"c{i}".encode() for i in range(10)]}}
    for i in range(1, 6):
        members[f"data_batch_{i}"] = cifar_batch(per_batch, seed=i)
    members["test_batch"] = cifar_batch(per_batch, seed=99)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            blob = pickle.dumps(payload, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return path, hashlib.md5(path.read_bytes()).hexdigest()

"""Split containers, seeded stratified splitting and capping, and the dataset fingerprint.

A split is decided on labels alone (indices), before any image is decoded, so a capped run of a
large image folder decodes only the images it keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from cifar_ops.errors import DataError

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, H, W, 3), int64 labels (N,), source paths when files exist."""

    images: np.ndarray
    labels: np.ndarray
    refs: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Part:
    """A split as a source offers it: labels now, images on demand for chosen indices."""

    labels: np.ndarray
    load: Callable[[np.ndarray], np.ndarray]  # sorted indices -> uint8 (n, H, W, 3)
    refs: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray) -> Part:
        return cls(labels=np.asarray(labels, dtype=np.int64), load=lambda idx: images[idx])

    def take(self, indices: np.ndarray) -> Split:
        """Materialise the chosen images (in index order) as a `Split`."""
        indices = np.sort(np.asarray(indices, dtype=np.int64))
        refs = [self.refs[i] for i in indices] if self.refs is not None else None
        images = np.ascontiguousarray(self.load(indices), dtype=np.uint8)
        return Split(images=images, labels=self.labels[indices], refs=refs)


@dataclass(frozen=True)
class SourceData:
    """What a source yields: class names and the splits it has (always `train`)."""

    class_names: list[str]
    parts: dict[str, Part] = field(default_factory=dict)


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 32-bit seed per purpose, so holding out and capping do not correlate."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def stratified_take(
    indices: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (kept, taken) with `count` taken, class proportions kept if possible.

    Falls back to a plain seeded random draw when a class is too small to stratify (sklearn
    refuses then), which only happens on tiny data sets.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if count <= 0:
        return np.sort(indices), indices[:0]
    if count >= len(indices):
        return indices[:0], np.sort(indices)
    try:
        kept, taken = train_test_split(
            indices, test_size=count, stratify=labels[indices], random_state=seed
        )
    except ValueError:
        order = np.random.default_rng(seed).permutation(len(indices))
        taken, kept = indices[order[:count]], indices[order[count:]]
    return np.sort(kept), np.sort(taken)


def fraction_count(total: int, fraction: float, what: str, where: str) -> int:
    """How many of `total` images a fraction takes: at least one, leaving at least one."""
    if total < 2:
        raise DataError(
            f"{where}: only {total} image(s), cannot hold out a {what} split; add images "
            f"or give the source its own {what} folder"
        )
    return min(max(1, round(total * fraction)), total - 1)


def fingerprint(class_names: Sequence[str], splits: dict[str, Split]) -> str:
    """SHA-256 over class names, and each split's images, labels and shape, in a fixed order."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(class_names).encode())
    for name in SPLIT_NAMES:
        split = splits[name]
        digest.update(f"|{name}|{split.images.shape}|".encode())
        digest.update(np.ascontiguousarray(split.images, dtype=np.uint8).data)
        digest.update(np.ascontiguousarray(split.labels, dtype=np.int64).data)
    return digest.hexdigest()

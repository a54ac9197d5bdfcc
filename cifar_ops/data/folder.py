"""An image folder: `<root>/<split>/<class>/*.jpg|png` or `<root>/<class>/*` (no split dirs),
on disk or in an object store.

Images of any size and mode are decoded (lazily, only those a run keeps) and resized to
`data.image_size`. Class names are the sorted folder names across all splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifar_ops.data.images import IMAGE_SUFFIXES, load_image_files
from cifar_ops.data.remote import load_remote_folder
from cifar_ops.data.splits import Part, SourceData
from cifar_ops.errors import DataError
from cifar_ops.storage.urls import is_url

# Folder name -> split; `val` and `valid` are the common spellings of `validation`.
SPLIT_DIRS = {
    "train": "train",
    "test": "test",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
}
LAYOUT_HINT = (
    "lay it out as <root>/<split>/<class>/*.jpg (split: train, test, validation) "
    "or <root>/<class>/*.jpg"
)


def load_folder(root_text: str, image_size: int) -> SourceData:
    """Scan the tree; each split's images are decoded when `Part.load` is called.

    An object-store URL (`s3://bucket/prefix/`) is read through a local mirror (data/remote.py).
    """
    if is_url(root_text):
        return load_remote_folder(root_text, image_size)
    root = Path(root_text).expanduser()
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "no such directory"
        raise DataError(f"data.dir {root}: {what}; {LAYOUT_HINT}")
    subdirs = _subdirs(root)
    split_dirs = {SPLIT_DIRS[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_DIRS}
    if split_dirs and "train" not in split_dirs:
        raise DataError(
            f"data.dir {root}: has {', '.join(sorted(split_dirs))}/ but no train/; add "
            f"{root / 'train'}/<class>/*.jpg"
        )
    listings = {
        split: _list_classes(folder) for split, folder in (split_dirs or {"train": root}).items()
    }
    class_names = sorted({name for classes in listings.values() for name in classes})
    index = {name: i for i, name in enumerate(class_names)}
    parts = {}
    for split, classes in listings.items():
        files = [path for name in sorted(classes) for path in classes[name]]
        labels = np.array(
            [index[name] for name in sorted(classes) for _ in classes[name]], dtype=np.int64
        )
        parts[split] = Part(
            labels=labels,
            load=_loader(files, image_size),
            refs=[str(path) for path in files],
        )
    return SourceData(class_names=class_names, parts=parts)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_classes(folder: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files; every class folder must hold at least one image."""
    classes = _subdirs(folder)
    if not classes:
        raise DataError(f"{folder}: no class folders inside; {LAYOUT_HINT}")
    listing = {}
    for class_dir in classes:
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise DataError(
                f"{class_dir}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add images or remove the folder"
            )
        listing[class_dir.name] = files
    return listing


def _loader(files: list[Path], image_size: int):  # noqa: ANN202 - a closure over the file list
    def load(indices: np.ndarray) -> np.ndarray:
        return load_image_files([files[i] for i in indices], image_size)

    return load

"""`load_dataset`: a source's splits, completed (held-out test, carved validation) and capped.

The held-out test split and the test cap use a fixed seed, not the run's: every run (and
`cifar-ops evaluate`, which does not know the training seed) sees the same test images of a
source. The validation carve and the train/validation caps follow the run seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cifar_ops.config import DataConfig
from cifar_ops.data.cifar10 import load_cifar10
from cifar_ops.data.folder import load_folder
from cifar_ops.data.splits import (
    SPLIT_NAMES,
    Part,
    SourceData,
    Split,
    derive_seed,
    fingerprint,
    fraction_count,
    stratified_take,
)
from cifar_ops.data.synthetic import load_synthetic
from cifar_ops.errors import DataError

TEST_SEED = 0  # fixed: the held-out test split is the same for every run of a source


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits of one source, its class names and a fingerprint."""

    train: Split
    validation: Split
    test: Split
    class_names: list[str]
    fingerprint: str  # SHA-256 of class names, images, labels and split membership
    test_is_held_out: bool  # the source had no test split; part of its train split was held out
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        """A split by name (`train`, `validation`, `test`), for commands that take `--split`."""
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)


def load_dataset(data: DataConfig, seed: int) -> Dataset:
    """Read the configured source and return its three splits; raises `DataError`."""
    source = _read_source(data, seed)
    where = f"data.source={data.source}" + (f" data.dir={data.dir}" if data.dir else "")
    chosen, test_is_held_out = _choose_indices(source, data, seed, where)
    splits = {name: part.take(indices) for name, (part, indices) in chosen.items()}
    return Dataset(
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        class_names=list(source.class_names),
        fingerprint=fingerprint(source.class_names, splits),
        test_is_held_out=test_is_held_out,
        source=data.source,
    )


def _read_source(data: DataConfig, seed: int) -> SourceData:
    if data.source == "cifar10":
        return load_cifar10(data.dir, archive=data.archive)
    if data.source == "folder":
        assert data.dir is not None  # DataConfig requires it for this source
        return load_folder(data.dir, data.image_size)
    return load_synthetic(data.synthetic_images, data.num_classes, data.image_size, seed)


def _choose_indices(
    source: SourceData, data: DataConfig, seed: int, where: str
) -> tuple[dict[str, tuple[Part, np.ndarray]], bool]:
    """Which images of which source part make up each split, decided on labels alone."""
    train = source.parts["train"]
    train_idx = np.arange(len(train))
    chosen: dict[str, tuple[Part, np.ndarray]] = {}
    held_out = "test" not in source.parts
    if held_out:
        count = fraction_count(len(train_idx), data.test_split, "test", where)
        train_idx, test_idx = stratified_take(train_idx, train.labels, count, TEST_SEED)
        chosen["test"] = (train, test_idx)
    else:
        chosen["test"] = (source.parts["test"], np.arange(len(source.parts["test"])))
    if "validation" in source.parts:
        validation = source.parts["validation"]
        chosen["validation"] = (validation, np.arange(len(validation)))
    else:
        count = fraction_count(len(train_idx), data.validation_split, "validation", where)
        split_seed = derive_seed(seed, "validation")
        train_idx, val_idx = stratified_take(train_idx, train.labels, count, split_seed)
        chosen["validation"] = (train, val_idx)
    chosen["train"] = (train, train_idx)
    if data.limit is not None:
        for name, (part, indices) in chosen.items():
            cap_seed = TEST_SEED if name == "test" else derive_seed(seed, f"limit-{name}")
            _, capped = stratified_take(indices, part.labels, data.limit, cap_seed)
            chosen[name] = (part, capped)
    return chosen, held_out

"""Data: sources (official CIFAR-10 archive, image folder, synthetic), splits, tf.data pipeline.

`load_dataset` and `load_image_file` need no TensorFlow; `make_pipeline` imports it on first use,
so commands that only read data start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cifar_ops.data.dataset import Dataset, load_dataset
from cifar_ops.data.images import load_image_file, load_image_files
from cifar_ops.data.splits import Split
from cifar_ops.errors import DataError

if TYPE_CHECKING:
    from cifar_ops.data.pipeline import make_pipeline

__all__ = [
    "DataError",
    "Dataset",
    "Split",
    "load_dataset",
    "load_image_file",
    "load_image_files",
    "make_pipeline",
]


def __getattr__(name: str) -> Any:
    if name == "make_pipeline":
        from cifar_ops.data.pipeline import make_pipeline

        return make_pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

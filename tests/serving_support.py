"""A tiny trained model in a SQLite warehouse, and images of every size and mode, shared by the
registry, scoring and serving tests (training once per module keeps them quick)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cifar_ops.runner import execute
from cifar_ops.warehouse import open_store
from tests.engine_helpers import tiny_config


def train_tiny(base: Path) -> dict:
    """Train one 1-epoch 16 px model, logged to `base/warehouse.db`, artifacts in `base/runs`."""
    url = f"sqlite:///{base / 'warehouse.db'}"
    with open_store(url) as sink:
        outcome = execute(tiny_config(train={"epochs": 1}, experiment="serving"), sink=sink)
    assert outcome.status == "succeeded" and outcome.model_path is not None
    return {"run_id": outcome.run_id, "model": str(outcome.model_path), "url": url}


def image_folder(root: Path, count: int = 12) -> Path:
    """Images of assorted sizes and modes (RGB, L, RGBA, P; PNG and JPEG) in nested folders."""
    modes = [("RGB", "png"), ("L", "png"), ("RGBA", "png"), ("P", "png"), ("RGB", "jpg")]
    for i in range(count):
        mode, ext = modes[i % len(modes)]
        sub = root / ("a" if i % 2 else "b") / ("deep" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        colour = (i * 20 % 256, 255 - i * 15 % 256, i * 40 % 256)
        image = Image.new("RGB", (8 + i * 5, 30 - i), colour).convert(mode)
        image.save(sub / f"img{i:03d}.{ext}")
    return root

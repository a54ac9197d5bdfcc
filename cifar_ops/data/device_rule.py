"""Which data path a run takes when its config says `data.pipeline: auto`."""

from __future__ import annotations

# `auto` picks the device path when the uint8 training split is at most this big (CIFAR-10's
# 40,000 training images are 117 MiB); larger folders stay on the host path.
DEVICE_BYTES_LIMIT = 2 * 2**30


def resolve_pipeline(pipeline: str, train_bytes: int) -> str:
    """`host` or `device` for a config's `data.pipeline` and its training split's uint8 size."""
    if pipeline != "auto":
        return pipeline
    return "device" if train_bytes <= DEVICE_BYTES_LIMIT else "host"

"""What an augmentation config asks for, and the columns of its per-image uniform draws.

Shared by the host path (augment.py, TensorFlow) and the device path (device_augment.py,
`keras.ops`), and free of both, so the device path imports no TensorFlow.
"""

from __future__ import annotations

from cifar_ops.config import AugmentationConfig
from cifar_ops.errors import ConfigError

# Columns of the per-image uniform draws: each transform has its own, so turning one on or off
# leaves the others' draws unchanged.
FLIP, ANGLE, ZOOM, SHIFT_X, SHIFT_Y, CROP_ROW, CROP_COL, CUT_Y, CUT_X = range(9)
DRAWS = 9


def check_augmentation(augmentation: AugmentationConfig, image_size: int) -> None:
    """Reject crop padding or cutout sizes that do not fit the images; raises `ConfigError`."""
    if augmentation.crop_padding >= image_size:
        raise ConfigError(
            f"got {augmentation.crop_padding}: reflect padding must be below the image size "
            f"({image_size} pixels)",
            key="augmentation.crop_padding",
        )
    if augmentation.cutout > image_size:
        raise ConfigError(
            f"got {augmentation.cutout}: the cutout square must fit the image "
            f"({image_size} pixels)",
            key="augmentation.cutout",
        )


def has_geometry(augmentation: AugmentationConfig) -> bool:
    """Whether the affine pass runs at all (rotation, a shift or zoom configured)."""
    aug = augmentation
    return bool(aug.rotation or aug.width_shift or aug.height_shift or aug.zoom)


def is_active(augmentation: AugmentationConfig | None) -> bool:
    """Whether any augmentation is configured."""
    if augmentation is None:
        return False
    aug = augmentation
    return bool(aug.flip or has_geometry(aug) or aug.crop_padding or aug.cutout)

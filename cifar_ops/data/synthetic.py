"""A deterministic, learnable synthetic source for tests and smoke runs.

Each class has its own hue (evenly spaced round the colour wheel) and stripe orientation; every
image adds a random stripe phase, brightness and pixel noise. A tiny CNN learns it well above
chance in two or three epochs, which is what engine tests need.
"""

from __future__ import annotations

import numpy as np

from cifar_ops.data.splits import Part, SourceData

NOISE_STD = 24.0  # pixel noise, in 0-255 units


def load_synthetic(total: int, num_classes: int, image_size: int, seed: int) -> SourceData:
    """`total` images (balanced classes, shuffled) of size `image_size`, the same for a seed."""
    colours = _distinct_colours(num_classes, np.random.default_rng([seed, 0]))
    angles = np.pi * np.arange(num_classes) / num_classes  # one stripe orientation per class
    rng = np.random.default_rng([seed, 1])
    labels = rng.permutation(np.arange(total) % num_classes).astype(np.int64)
    grid = np.arange(image_size, dtype=np.float64)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    frequency = 2 * np.pi * 4 / image_size  # four stripes across the image
    phases = rng.uniform(0, 2 * np.pi, size=total)
    brightness = rng.uniform(-25, 25, size=total)
    images = np.empty((total, image_size, image_size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        angle = angles[label]
        wave = np.sin(frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + phases[i])
        pixels = colours[label] + 50.0 * wave[..., None] + brightness[i]
        pixels = pixels + rng.normal(0, NOISE_STD, size=pixels.shape)
        images[i] = np.clip(pixels, 0, 255).astype(np.uint8)
    class_names = [f"class_{i}" for i in range(num_classes)]
    return SourceData(class_names=class_names, parts={"train": Part.from_arrays(images, labels)})


def _distinct_colours(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) RGB colours at evenly spaced hues from a seeded start, in 0-255 units."""
    hues = (rng.uniform() + np.arange(count) / count) % 1.0
    sector = hues[:, None] * 6.0 - np.array([[0.0, 2.0, 4.0]])  # HSV->RGB, full saturation
    channel = np.clip(np.abs((sector + 6.0) % 6.0 - 3.0) - 1.0, 0.0, 1.0)
    return 50.0 + 150.0 * channel

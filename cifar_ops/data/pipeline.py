"""`make_pipeline`: a split as a tf.data pipeline of (float32 images in [0, 255], int64 labels).

The uint8 images are cached (a quarter of the float32 size), shuffled with the run seed, batched,
then cast and augmented a whole batch at a time in a parallel map, and prefetched so the model
never waits on the input. Models normalise the [0, 255] pixels themselves.
"""

from __future__ import annotations

import tensorflow as tf

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.augment import augmentation_layers
from cifar_ops.data.splits import Split


def make_pipeline(
    split: Split,
    *,
    batch_size: int,
    training: bool,
    augmentation: AugmentationConfig | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of one split; shuffle and augmentation only when `training`."""
    image_size = int(split.images.shape[1])
    layers = (
        augmentation_layers(augmentation, image_size, seed) if training and augmentation else []
    )
    dataset = tf.data.Dataset.from_tensor_slices((split.images, split.labels)).cache()
    if training:
        dataset = dataset.shuffle(max(1, len(split)), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.cast(images, tf.float32)
        for layer in layers:
            pixels = layer(pixels, training=True)
        return pixels, labels

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)

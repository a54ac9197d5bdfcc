"""`make_pipeline`: a split as a tf.data pipeline of (float32 images in [0, 255], int64 labels).

The uint8 images stay in memory as one tensor (a quarter of the float32 size). The pipeline
shuffles and batches only indices, so no per-image tf.data element is ever built; a parallel map
gathers each batch, casts it and augments it as a whole, and prefetch keeps the model from
waiting on the input. Augmentation draws from a per-batch seed of a `Dataset.random` stream that
is new each epoch and fixed by the run seed. Models normalise the [0, 255] pixels themselves.
"""

from __future__ import annotations

import tensorflow as tf

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.augment import augment_batch, check_augmentation, is_active
from cifar_ops.data.splits import Split, derive_seed


def make_pipeline(
    split: Split,
    *,
    batch_size: int,
    training: bool,
    augmentation: AugmentationConfig | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of one split; shuffle and augmentation only when `training`."""
    augment = training and is_active(augmentation)
    if augment:
        assert augmentation is not None
        check_augmentation(augmentation, int(split.images.shape[1]))
    images = tf.constant(split.images)
    labels = tf.constant(split.labels)
    indices = tf.data.Dataset.range(len(split))
    if training:
        indices = indices.shuffle(max(1, len(split)), seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size)

    def gather(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(images, index), tf.float32), tf.gather(labels, index)

    if augment:
        assert augmentation is not None
        seeds = tf.data.Dataset.random(
            seed=derive_seed(seed, "augment") % 2**31, rerandomize_each_iteration=True
        ).batch(2)

        def augmented(index: tf.Tensor, batch_seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            pixels, batch_labels = gather(index)
            return augment_batch(pixels, batch_seed, augmentation), batch_labels

        dataset = tf.data.Dataset.zip(batches, seeds).map(
            augmented, num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        dataset = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)

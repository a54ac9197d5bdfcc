"""`make_pipeline`: a split as a tf.data pipeline of (float32 images in [0, 255], int64 labels).

The uint8 images stay in memory as one tensor (a quarter of the float32 size). The pipeline
shuffles and batches only indices, so no per-image tf.data element is ever built; a parallel map
gathers each batch, casts it and augments it as a whole, and prefetch keeps the model from
waiting on the input. Augmentation draws from a per-batch seed of a `Dataset.random` stream that
is new each epoch and fixed by the run seed. Models normalise the [0, 255] pixels themselves.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.augment import (
    alternating_flips,
    augment_batch,
    check_augmentation,
    first_flips,
    is_active,
)
from cifar_ops.data.splits import Split, derive_seed


def make_pipeline(
    split: Split,
    *,
    batch_size: int,
    training: bool,
    augmentation: AugmentationConfig | None = None,
    seed: int = 0,
    epoch: tf.Variable | None = None,
) -> tf.data.Dataset:
    """Batches of one split; shuffle and augmentation only when `training`.

    An alternating flip reads the 0-based epoch from `epoch` (int64), which `EpochSetter` sets
    as each epoch begins: Keras starts a new pass over the dataset after that, so every batch
    of the pass sees its own epoch, and a resumed run (Keras's `initial_epoch`) continues the
    parity.
    """
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

        if augmentation.flip == "alternating":
            if epoch is None:
                raise ValueError("an alternating flip needs the epoch variable (EpochSetter)")
            first = tf.constant(first_flips(len(split), derive_seed(seed, "flip")))
            counter = epoch

            def alternating(index, batch_seed) -> tuple[tf.Tensor, tf.Tensor]:
                pixels, batch_labels = gather(index)
                flips = alternating_flips(first, index, counter.read_value())
                return augment_batch(pixels, batch_seed, augmentation, flips), batch_labels

            dataset = tf.data.Dataset.zip(batches, seeds).map(
                alternating, num_parallel_calls=tf.data.AUTOTUNE
            )
        else:

            def augmented(index, batch_seed) -> tuple[tf.Tensor, tf.Tensor]:
                pixels, batch_labels = gather(index)
                return augment_batch(pixels, batch_seed, augmentation), batch_labels

            dataset = tf.data.Dataset.zip(batches, seeds).map(
                augmented, num_parallel_calls=tf.data.AUTOTUNE
            )
    else:
        dataset = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def epoch_variable(first_epoch: int = 0) -> tf.Variable:
    """The 0-based epoch an alternating flip reads (`make_pipeline(epoch=...)`)."""
    return tf.Variable(first_epoch, dtype=tf.int64, trainable=False, name="pipeline_epoch")


class EpochSetter(keras.callbacks.Callback):
    """Sets the pipeline's epoch variable at each epoch's start, before Keras starts the pass."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.assign(epoch)

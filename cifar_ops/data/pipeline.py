"""`make_pipeline`: a split as a tf.data pipeline of (float32 images in [0, 255], int64 labels).

The uint8 images stay in memory as one tensor (a quarter of the float32 size). The pipeline
batches only indices, so no per-image tf.data element is ever built; a parallel map gathers each
batch, casts it and augments it as a whole, and prefetch keeps the model from waiting on the
input (autotuning off: see `without_autotune`). Models normalise the [0, 255] pixels themselves.

A training pass is a function of (run seed, epoch) alone: the order is a stateless shuffle keyed
by the epoch, and each batch augments from the seed (run seed, global step). A run resumed at
epoch k therefore sees epoch k's order and draws, as an uninterrupted run does. (tf.data's own
`reshuffle_each_iteration` and `Dataset.random` streams count passes of one pipeline object: a
resumed process started them over, so its first epoch replayed the previous sitting's first
epoch image for image, which a wide net memorised: 98.6% training accuracy on augmented batches
against 93.8% the epoch before.) The device path keys its feed the same way (`data.device`).
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

    A training pipeline requires `epoch` and reads its 0-based epoch from it (`epoch_variable`),
    which `EpochSetter` sets as each epoch begins: Keras starts a new pass over the dataset after
    that, so every batch of the pass sees its own epoch, resumed runs (Keras's `initial_epoch`)
    included. Outside Keras, assign it before each pass.
    """
    images = tf.constant(split.images)
    labels = tf.constant(split.labels)

    def gather(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.gather(images, index), tf.float32), tf.gather(labels, index)

    if not training:
        batches = tf.data.Dataset.range(len(split)).batch(batch_size)
        return without_autotune(batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE))
    augment = is_active(augmentation)
    if augment:
        assert augmentation is not None
        check_augmentation(augmentation, int(split.images.shape[1]))
    if epoch is None:
        raise ValueError(
            "a training pipeline needs the epoch variable (epoch_variable, set by EpochSetter): "
            "its order and augmentation are keyed by the epoch"
        )
    count, counter = len(split), epoch
    steps = -(-count // batch_size)  # batches a pass, the last one short
    order_seed = derive_seed(seed, "order") % 2**31
    augment_seed = derive_seed(seed, "augment") % 2**31

    def epoch_order(_: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(order_seed, tf.int64), counter.read_value()])
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    batches = (
        tf.data.Dataset.range(1)
        .flat_map(epoch_order)
        .apply(tf.data.experimental.assert_cardinality(steps))  # Keras counts an epoch's steps
        .enumerate()
    )
    if not augment:
        dataset = batches.map(lambda _, index: gather(index), num_parallel_calls=tf.data.AUTOTUNE)
        return without_autotune(dataset)
    assert augmentation is not None
    alternating = augmentation.flip == "alternating"
    first = tf.constant(first_flips(count, derive_seed(seed, "flip")) if alternating else [False])

    def augmented(step: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels, batch_labels = gather(index)
        now = counter.read_value()
        batch_seed = tf.stack([tf.constant(augment_seed, tf.int64), now * steps + step])
        flips = alternating_flips(first, index, now) if alternating else None
        return augment_batch(pixels, batch_seed, augmentation, flips), batch_labels

    return without_autotune(batches.map(augmented, num_parallel_calls=tf.data.AUTOTUNE))


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, prefetching two batches, with tf.data's autotuning off.

    Keras makes a new iterator for each epoch's pass and each validation. With autotuning on,
    destroying one could wait on a thread of its pool (`~LogicalThreadWrapper` under
    `RootDataset::Iterator::~Iterator`; the wait is gone with autotuning off): on the 2-core CPU
    that wait, every thread of the process asleep, added ~2.5 s to about one epoch in three
    (bench/RESULTS.md, session 26). A parallel map's AUTOTUNE still runs calls on every core
    (two at once on that CPU, as with autotuning).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)


def epoch_variable(first_epoch: int = 0) -> tf.Variable:
    """The 0-based epoch a training pipeline reads (`make_pipeline(epoch=...)`). Placed on the
    CPU, where tf.data runs and reads it for every batch, rather than on an accelerator."""
    with tf.device("/CPU:0"):
        return tf.Variable(first_epoch, dtype=tf.int64, trainable=False, name="pipeline_epoch")


class EpochSetter(keras.callbacks.Callback):
    """Sets the pipeline's epoch variable at each epoch's start, before Keras starts the pass."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.assign(epoch)

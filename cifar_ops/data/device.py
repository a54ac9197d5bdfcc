"""The device data path: the uint8 training split held once where the model runs, each batch
gathered and augmented inside the compiled training step.

The host only feeds each step's image indices, its global step number and its epoch (a few
hundred integers); `DeviceTrainer` gathers those images from its uint8 variable, casts and
augments them with `keras.ops` (device_augment.py) and calls the model. The epoch's order is a
permutation of (seed, epoch) and the augmentation is keyed by (seed, step), so a resumed run
continues the same stream. The trainer is never saved: `save`, `get_weights` and `set_weights`
go to the wrapped model, so callbacks that save or restore "the model" write the plain model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from cifar_ops.config import AugmentationConfig
from cifar_ops.data.device_augment import gather_augmented
from cifar_ops.data.draws import check_augmentation, is_active
from cifar_ops.data.splits import Split, derive_seed


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The order of the training images in 0-based `epoch`: a permutation keyed by both."""
    return np.random.default_rng([derive_seed(seed, "order"), epoch]).permutation(count)


def first_flips(count: int, seed: int) -> np.ndarray:
    """Each image's mirror in even epochs of an alternating flip: half of them, by `seed`."""
    return np.random.default_rng([derive_seed(seed, "flip")]).random(count) < 0.5


class StepFeed(keras.utils.PyDataset):
    """Index batches of one epoch, `epoch` (0-based), which `EpochFeed` moves on each epoch.

    Each element is ({index, step, epoch}, labels). One pass is one epoch, so Keras ends each
    epoch on the feed's own end: with `steps_per_execution` a last, shorter group of steps ends
    the epoch instead of running into the next one.
    """

    def __init__(self, labels: np.ndarray, *, batch_size: int, seed: int, epoch: int = 0):
        super().__init__()
        self.labels, self.batch_size, self.seed = labels, batch_size, seed
        self.epoch = epoch
        self.steps_per_epoch = -(-len(labels) // batch_size)
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __getitem__(self, position: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        epoch, order = self._epoch_order()
        start = position * self.batch_size
        index = order[start : start + self.batch_size].astype("int32")
        step = epoch * self.steps_per_epoch + position
        inputs = {
            "index": index,
            "step": np.full(len(index), step, "int32"),
            "epoch": np.full(len(index), epoch, "int32"),
        }
        return inputs, self.labels[index]

    def _epoch_order(self) -> tuple[int, np.ndarray]:
        """The current epoch and its order, read as one tuple (a feed thread may call this)."""
        cached, epoch = self._order, self.epoch
        if cached is None or cached[0] != epoch:
            cached = (epoch, epoch_order(self.seed, epoch, len(self.labels)))
            self._order = cached
        return cached


class EpochFeed(keras.callbacks.Callback):
    """Moves a `StepFeed` to each epoch Keras begins, before the epoch's first batch is read."""

    def __init__(self, feed: StepFeed):
        super().__init__()
        self.feed = feed

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.feed.epoch = epoch


class ArrayBatches(keras.utils.PyDataset):
    """Batches of a split in order, uint8 cast to float32 [0, 255] on the host (evaluation)."""

    def __init__(self, split: Split, batch_size: int):
        super().__init__()
        self.split, self.batch_size = split, batch_size

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __getitem__(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        part = slice(item * self.batch_size, (item + 1) * self.batch_size)
        return self.split.images[part].astype("float32"), self.split.labels[part]


def tf_step_feed(feed: StepFeed) -> Any:
    """The elements of `feed`, made by tf.data on the TensorFlow backend.

    Keras feeds a `PyDataset` through `tf.data.Dataset.from_generator`, a Python call per step
    and an autotuned pipeline (whose end can stall: `pipeline.without_autotune`). Here the only
    Python call is one per pass, reading the feed's epoch and order when the pass
    starts (after `EpochFeed` moved it); each step's slice, step and epoch come from tf.data.
    """
    import tensorflow as tf

    from cifar_ops.data.pipeline import without_autotune

    steps, size, count = len(feed), feed.batch_size, len(feed.labels)
    labels = tf.constant(feed.labels)

    def current_order() -> tuple[np.int32, np.ndarray]:
        epoch, order = feed._epoch_order()
        return np.int32(epoch), order.astype("int32")

    def one_pass(_: Any) -> Any:
        epoch, order = tf.numpy_function(current_order, [], (tf.int32, tf.int32), stateful=True)
        epoch, order = tf.ensure_shape(epoch, []), tf.ensure_shape(order, [count])

        def element(position: Any) -> Any:
            position = tf.cast(position, tf.int32)
            index = order[position * size : (position + 1) * size]
            filled = tf.ones_like(index)
            inputs = {"index": index, "step": filled * (epoch * steps + position)}
            return inputs | {"epoch": filled * epoch}, tf.gather(labels, index)

        return tf.data.Dataset.range(steps).map(element)

    passes = tf.data.Dataset.range(1).flat_map(one_pass)
    return without_autotune(passes.apply(tf.data.experimental.assert_cardinality(steps)))


def tf_array_batches(batches: ArrayBatches) -> Any:
    """The batches of `batches` (validation, in order) on TensorFlow: the host path's evaluation
    pipeline, which makes the same batches in tf.data."""
    from cifar_ops.data.pipeline import make_pipeline

    return make_pipeline(batches.split, batch_size=batches.batch_size, training=False)


class DeviceTrainer(keras.Model):
    """Trains `model` on batches it gathers from its own copy of the split and augments."""

    def __init__(
        self,
        model: keras.Model,
        images: np.ndarray,
        augmentation: AugmentationConfig,
        seed: int,
    ):
        check_augmentation(augmentation, int(images.shape[1]))  # ConfigError when too big
        super().__init__(name="device_trainer")
        self.inner = model
        self.augmentation = augmentation
        self.augment_seed = derive_seed(seed, "augment") % 2**31
        self.images = keras.Variable(images, dtype="uint8", trainable=False, name="images")
        self.alternating = augmentation.flip == "alternating"
        flips = first_flips(len(images), seed) if self.alternating else np.zeros(1, bool)
        self.flips = keras.Variable(flips.astype("uint8"), trainable=False, name="first_flips")
        self.active = is_active(augmentation)
        self.built = True

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not isinstance(inputs, dict):  # evaluation: images already
            return self.inner(inputs, training=training)
        index = inputs["index"]
        if not (training and self.active):
            pixels = ops.cast(ops.take(self.images, index, axis=0), "float32")
            return self.inner(pixels, training=training)
        seed = ops.stack([ops.convert_to_tensor(self.augment_seed, "int32"), inputs["step"][0]])
        flips = None
        if self.alternating:
            odd = ops.equal(ops.mod(inputs["epoch"], 2), 1)
            flips = ops.not_equal(ops.take(self.flips, index, axis=0) > 0, odd)
        pixels = gather_augmented(self.images, index, seed, self.augmentation, flips)
        return self.inner(pixels, training=training)

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        """`Model.fit`; on TensorFlow the feeds go in as tf.data datasets (`tf_step_feed`)."""
        if keras.backend.backend() == "tensorflow":
            if isinstance(x, StepFeed):
                x = tf_step_feed(x)
            if isinstance(kwargs.get("validation_data"), ArrayBatches):
                kwargs["validation_data"] = tf_array_batches(kwargs["validation_data"])
        return super().fit(x, *args, **kwargs)

    # the trainer's own variables (the split) are never saved: these reach the model itself
    def save(self, *args: Any, **kwargs: Any) -> None:
        self.inner.save(*args, **kwargs)

    def get_weights(self) -> list[np.ndarray]:
        return self.inner.get_weights()

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.inner.set_weights(weights)


def device_inputs(
    model: keras.Model,
    train: Split,
    validation: Split,
    *,
    augmentation: AugmentationConfig,
    batch_size: int,
    seed: int,
    first_epoch: int = 0,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> tuple[DeviceTrainer, StepFeed, ArrayBatches]:
    """The trainer compiled like `model` (its optimizer, loss) and the feeds for `fit`, which
    also takes `EpochFeed(feed)` as a callback."""
    trainer = DeviceTrainer(model, train.images, augmentation, seed)
    trainer.compile(
        optimizer=model.optimizer,
        loss=model.loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    feed = StepFeed(train.labels, batch_size=batch_size, seed=seed, epoch=first_epoch)
    return trainer, feed, ArrayBatches(validation, batch_size)

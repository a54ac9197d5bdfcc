"""The `fast` net's accuracy target on this CPU: train 5 epochs on 40,000 CIFAR-10 JPEGs, report
held-out accuracy on the other 10,000 (stratified) and seconds per epoch.

With `--baseline` a plain ResNet-9-style net (conv-BN-ReLU, residual blocks 128/512, max pooling,
one-cycle SGD) trains on the same split in the same run, and the ratio is printed.

    nice -n 10 .venv/bin/python bench/fast_cpu.py --data .cache/data/train [--baseline]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from sklearn.model_selection import train_test_split

from cifar_ops.config import FastModel
from cifar_ops.models import build_model


def load_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`<root>/<class>/*.jpg` as uint8 arrays; cached next to the folder as an .npz."""
    cache = root.parent / f"{root.name}-32.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["x"], data["y"], list(data["classes"])
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            with Image.open(path) as img:
                xs.append(np.asarray(img.convert("RGB").resize((32, 32))))
            ys.append(label)
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    np.savez(cache, x=x, y=y, classes=np.array(classes))
    return x, y, classes


def augment(image: tf.Tensor, translate: int) -> tf.Tensor:
    """Random horizontal flip and a random translation of up to `translate` pixels (reflect pad)."""
    image = tf.image.random_flip_left_right(image)
    if translate:
        padded = tf.pad(image, [[translate, translate], [translate, translate], [0, 0]], "REFLECT")
        image = tf.image.random_crop(padded, tf.shape(image))
    return image


def pipeline(x: np.ndarray, y: np.ndarray, batch: int, *, train: bool, translate: int, seed: int):
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if train:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda i, t: (augment(i, translate), t), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch, drop_remainder=train)
    return ds.map(lambda i, t: (tf.cast(i, tf.float32), t)).prefetch(tf.data.AUTOTUNE)


def triangular(peak: float, steps: int, rise: float, start: float, end: float):
    """One-cycle in airbench's shape: linear from start*peak to peak, then linear to end*peak."""
    points = [0.0, rise * steps, float(steps)]
    values = [start * peak, peak, end * peak]

    class Triangular(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            s = tf.cast(step, tf.float32)
            up = values[0] + (values[1] - values[0]) * s / points[1]
            down = values[1] + (values[2] - values[1]) * (s - points[1]) / (points[2] - points[1])
            return tf.where(s < points[1], up, tf.maximum(down, values[2]))

        def get_config(self):
            return {}

    return Triangular()


def resnet9(num_classes: int = 10) -> keras.Model:
    """The plain baseline: Page's ResNet-9 (64-128-256-512, two residual blocks), ReLU."""
    from keras import layers

    def cbr(x, f, name):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.Activation("relu", name=f"{name}_relu")(x)

    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = cbr(x, 64, "prep")
    for f, res in ((128, True), (256, False), (512, True)):
        x = layers.MaxPooling2D()(cbr(x, f, f"layer{f}"))
        if res:
            x = layers.Add()([x, cbr(cbr(x, f, f"res{f}a"), f, f"res{f}b")])
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Activation("softmax", dtype="float32")(layers.Dense(num_classes)(x))
    return keras.Model(inputs, outputs, name="resnet9")


def train_and_score(model: keras.Model, data, args, *, lr: float, momentum: float, wd: float):
    x_train, y_train, x_test, y_test = data
    steps = args.epochs * (len(x_train) // args.batch_size)
    schedule = triangular(lr, steps, args.rise, args.lr_start, 0.0)
    optimizer = keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, weight_decay=wd)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    train = pipeline(
        x_train, y_train, args.batch_size, train=True, translate=args.translate, seed=args.seed
    ).map(lambda i, t: (i, tf.one_hot(t, 10)))
    epoch_seconds = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        history = model.fit(train, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        epoch_seconds.append(time.perf_counter() - start)
        print(
            f"  {model.name} epoch {epoch + 1}: loss {history.history['loss'][-1]:.3f} "
            f"train acc {history.history['accuracy'][-1]:.4f} ({epoch_seconds[-1]:.0f} s)",
            flush=True,
        )
    test = pipeline(x_test, y_test, 500, train=False, translate=0, seed=0)
    probs = model.predict(test, verbose=0)
    flipped = model.predict(test.map(lambda i, t: (tf.reverse(i, axis=[2]), t)), verbose=0)
    return {
        "model": model.name,
        "params": model.count_params(),
        "epochs": args.epochs,
        "accuracy": float(np.mean(probs.argmax(1) == y_test)),
        "accuracy_flip_tta": float(np.mean((probs + flipped).argmax(1) == y_test)),
        "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "first_epoch_seconds": epoch_seconds[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".cache/data/train"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.4)
    parser.add_argument("--lr-start", type=float, default=0.2, help="start LR as a peak fraction")
    parser.add_argument("--rise", type=float, default=0.2, help="fraction of steps to the peak")
    parser.add_argument("--momentum", type=float, default=0.85)
    parser.add_argument("--weight-decay", type=float, default=5e-5)
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument("--translate", type=int, default=2)
    parser.add_argument("--widths", type=str, default="64,256,256")
    parser.add_argument("--stem", type=int, default=24)
    parser.add_argument("--bn-momentum", type=float, default=0.6)
    parser.add_argument("--precision", default="mixed_bfloat16", help="Keras dtype policy")
    parser.add_argument("--baseline", action="store_true", help="also train the ResNet-9")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="images per split (smoke runs)")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)
    x, y, _classes = load_folder(args.data)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=10_000, stratify=y, random_state=args.seed
    )
    if args.limit:
        x_train, y_train, x_test, y_test = (
            a[: args.limit] for a in (x_train, y_train, x_test, y_test)
        )
    data = (x_train, y_train, x_test, y_test)
    print(f"train {len(x_train)} / held-out {len(x_test)} images; {vars(args)}", flush=True)

    cfg = FastModel(
        name="fast",
        widths=[int(w) for w in args.widths.split(",")],
        stem_filters=args.stem,
        batch_norm_momentum=args.bn_momentum,
    )
    results = [
        train_and_score(
            build_model(cfg), data, args, lr=args.lr, momentum=args.momentum, wd=args.weight_decay
        )
    ]
    if args.baseline:
        results.append(train_and_score(resnet9(), data, args, lr=0.1, momentum=0.9, wd=5e-4))
    for result in results:
        print(json.dumps(result))
    if args.baseline:
        fast, base = results
        print(
            f"fast / resnet9: accuracy {fast['accuracy']:.4f} vs {base['accuracy']:.4f}, "
            f"time per epoch ratio {base['seconds_per_epoch'] / fast['seconds_per_epoch']:.2f}x"
        )


if __name__ == "__main__":
    main()

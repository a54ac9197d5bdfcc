"""Training images/s: the project's tf.data pipeline against the seeds' numpy-generator baseline.

Both train the same model (`simple_cnn`, seeds 003/004) with the same augmentation (seed 004's:
flip, 15 degree rotation, 10% shifts, 10% zoom) on the same few thousand images of the shared
CIFAR-10 JPEG set:

- baseline, as the seeds did it: numpy arrays, a Python generator that augments each image of a
  batch with scipy.ndimage affine transforms (what ImageDataGenerator does), `model.fit(generator)`;
- pipeline: `load_dataset` + `make_pipeline` (uint8 in memory, shuffled index batches, one fused
  affine pass per image in a parallel map over whole batches, prefetch) + `model.fit(dataset)`;
- device: `data.pipeline: device` (data/device.py): the uint8 split is a variable of the trainer,
  and each compiled step gathers its batch and augments it with `keras.ops`; the host feeds only
  indices. It has no separate input stage, so its "input alone" rate is not measured.

`--steps-per-execution N` adds `device_grouped`: the device path compiled with N training steps
per call (`train.steps_per_execution`), so the host's per-step work runs once per group.

Each fit also reports its epoch spread: (slowest - fastest) / median of its timed epochs, and the
same spread of the process's CPU seconds per epoch: a host running slower moves both, a process
waiting (idle) moves only the first.

The first epoch of each fit is a warm-up (graph tracing) and not counted; a fit's rate is the
median of its timed epochs. Repeats alternate the order of the two methods. The machine is
shared, so `--wait-load` first waits (up to `--max-wait` seconds) for the 1-minute load average
to drop, and the load average is printed with every repeat.
`--mixed-precision` builds every method's model under the policy `train.mixed_precision: true`
stands for on this machine (cifar_ops.precision: bfloat16 on a CPU with native support), so the
three still train the same model; without it all three train in float32, as the seeds did.
Run it with `nice -n 10 .venv/bin/python bench/train_throughput.py --wait-load 1.5`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import ndimage  # noqa: E402

from cifar_ops import settings  # noqa: E402
from cifar_ops.config import AugmentationConfig, DataConfig, SimpleCnnModel  # noqa: E402
from cifar_ops.data import Split, load_dataset, make_pipeline  # noqa: E402
from cifar_ops.data.device import DeviceTrainer, EpochFeed, StepFeed  # noqa: E402
from cifar_ops.data.pipeline import EpochSetter, epoch_variable  # noqa: E402
from cifar_ops.models import build_model  # noqa: E402
from cifar_ops.precision import precision_policy  # noqa: E402

# shared/ lies beside the checkout
SHARED_ARCHIVE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
)
AUGMENTATION = AugmentationConfig(
    flip=True, rotation=15, width_shift=0.1, height_shift=0.1, zoom=0.1
)


def extract_subset(archive: Path, per_class: int) -> Path:
    """The first `per_class` JPEGs of each class, unpacked once into the data cache."""
    target = settings.data_cache_dir() / "bench" / f"cifar10-jpeg-{per_class}"
    done = target / ".complete"
    if done.is_file():
        return target
    wanted = {f"/{i:04d}.jpg" for i in range(per_class)}
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile() and m.name[-9:] in wanted]
        tar.extractall(target, members=members, filter="data")
    done.touch()
    return target


# --- baseline: the seeds' way ------------------------------------------------------------------


def augment_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One image through an ImageDataGenerator-style random affine transform (scipy.ndimage)."""
    height, width = image.shape[:2]
    theta = np.deg2rad(rng.uniform(-AUGMENTATION.rotation, AUGMENTATION.rotation))
    shift_y = rng.uniform(-AUGMENTATION.height_shift, AUGMENTATION.height_shift) * height
    shift_x = rng.uniform(-AUGMENTATION.width_shift, AUGMENTATION.width_shift) * width
    zoom = rng.uniform(1 - AUGMENTATION.zoom, 1 + AUGMENTATION.zoom)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = rotation * zoom
    centre = np.array([height / 2 - 0.5, width / 2 - 0.5])
    offset = centre - matrix @ centre + np.array([shift_y, shift_x])
    out = np.empty_like(image)
    for channel in range(image.shape[2]):
        out[..., channel] = ndimage.affine_transform(
            image[..., channel], matrix, offset=offset, order=1, mode="nearest"
        )
    if rng.uniform() < 0.5:
        out = out[:, ::-1]
    return out


def numpy_batches(
    split: Split, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless shuffled batches, augmented image by image in Python, as float32 [0, 255]."""
    rng = np.random.default_rng(seed)
    images = split.images.astype(np.float32)
    while True:
        order = rng.permutation(len(split))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = np.stack([augment_image(images[i], rng) for i in index])
            yield batch, split.labels[index]


# --- measurement ---------------------------------------------------------------------------


class EpochTimer(keras.callbacks.Callback):
    """Each epoch's wall seconds and the process's CPU seconds in it.

    The CPU seconds tell a host that ran slower (more CPU for the same work) from a process that
    waited (the same CPU over a longer wall time, as tf.data's autotuner stall did).
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def fresh_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model(SimpleCnnModel(name="simple_cnn"))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def images_per_second(
    method: str, split: Split, batch_size: int, epochs: int, seed: int, group: int = 1
) -> tuple[float, float, float]:
    """Median training images/s over the epochs after the first (warm-up: tracing, cache fill).

    The median, not the mean: the 2-core machine is shared, and one epoch that another process
    slowed should not decide the result. Also returns the epochs' spread (see the module doc) and
    the same spread of their CPU seconds.
    """
    model = fresh_model()
    timer = EpochTimer()
    steps = -(-len(split) // batch_size)
    if method == "baseline":
        data = numpy_batches(split, batch_size, seed)
        model.fit(
            data,
            steps_per_epoch=steps,
            epochs=epochs + 1,
            callbacks=[timer],
            verbose=0,
            shuffle=False,
        )
    elif method in ("device", "device_grouped"):
        trainer = DeviceTrainer(model, split.images, AUGMENTATION, seed)
        trainer.compile(
            model.optimizer,
            model.loss,
            metrics=["accuracy"],
            steps_per_execution=group if method == "device_grouped" else 1,
        )
        feed = StepFeed(split.labels, batch_size=batch_size, seed=seed)
        trainer.fit(
            feed, epochs=epochs + 1, callbacks=[EpochFeed(feed), timer], verbose=0, shuffle=False
        )
    else:
        counter = epoch_variable()
        data = make_pipeline(
            split,
            batch_size=batch_size,
            training=True,
            augmentation=AUGMENTATION,
            seed=seed,
            epoch=counter,
        )
        setter = EpochSetter(counter)
        model.fit(data, epochs=epochs + 1, callbacks=[setter, timer], verbose=0, shuffle=False)
    timed, cpu = timer.seconds[1:], timer.cpu_seconds[1:]
    median = statistics.median(timed)
    return len(split) / median, relative_range(timed), relative_range(cpu)


def relative_range(values: list[float]) -> float:
    """(largest - smallest) / median: an epoch spread."""
    return (max(values) - min(values)) / statistics.median(values)


def input_images_per_second(method: str, split: Split, batch_size: int, seed: int) -> float:
    """Images/s of the augmented input alone (no model): the rate that bounds a fast accelerator."""
    if method == "baseline":
        batches: Iterator = numpy_batches(split, batch_size, seed)
    else:
        dataset = make_pipeline(
            split,
            batch_size=batch_size,
            training=True,
            augmentation=AUGMENTATION,
            seed=seed,
            epoch=epoch_variable(),  # one epoch's order and draws, repeated: the same work
        )
        batches = iter(dataset.repeat())
    next(batches)  # warm-up: tracing, threads
    seen, started = 0, time.perf_counter()
    while seen < 2 * len(split):
        seen += len(next(batches)[1])
    return seen / (time.perf_counter() - started)


def _spread(values: list[float], digits: int = 1) -> dict[str, float]:
    stdev = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), digits), "stdev": round(stdev, digits)}


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it (from /proc/cpuinfo), else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def wait_for_load(below: float, max_wait: float, poll: float = 30.0) -> bool:
    """Poll the 1-minute load average until it is below `below`; False if `max_wait` ran out."""
    deadline = time.monotonic() + max_wait
    while (load := os.getloadavg()[0]) >= below:
        if time.monotonic() >= deadline:
            print(f"load average still {load:.2f} after {max_wait:.0f} s: measuring anyway")
            return False
        print(f"load average {load:.2f} >= {below}: waiting {poll:.0f} s", flush=True)
        time.sleep(poll)
    return True


def machine() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def measure(
    methods: tuple[str, ...], train: Split, args: argparse.Namespace, loads: list[float]
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]]]:
    """Every method's training (and input-alone) rates and epoch spreads (of wall and of CPU
    seconds), repeats alternating.

    Appends the load average after each fit to `loads`, for the summary.
    """
    rates: dict[str, dict[str, list[float]]] = {"train": {}, "input": {}}
    spreads: dict[str, dict[str, list[float]]] = {"wall": {}, "cpu": {}}
    for repeat in range(args.repeats):
        for method in methods if repeat % 2 == 0 else methods[::-1]:
            rate, wall_spread, cpu_spread = images_per_second(
                method, train, args.batch_size, args.epochs, repeat, args.steps_per_execution
            )
            measured = {"train": rate}
            if not method.startswith("device"):
                measured["input"] = input_images_per_second(method, train, args.batch_size, repeat)
            for kind, value in measured.items():
                rates[kind].setdefault(method, []).append(value)
            spreads["wall"].setdefault(method, []).append(wall_spread)
            spreads["cpu"].setdefault(method, []).append(cpu_spread)
            loads.append(os.getloadavg()[0])
            print(
                f"repeat {repeat + 1}: {method:14s} training {rate:6.0f} images/s "
                f"(epoch spread {wall_spread:.0%}, of CPU seconds {cpu_spread:.0%}), "
                f"input alone {measured.get('input', math.nan):6.0f} "
                f"images/s, load average {loads[-1]:.2f}",
                flush=True,
            )
    return rates, spreads


def positive(text: str) -> int:
    """A count flag's value: a whole number of at least 1 (0 would time nothing)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_ARCHIVE)
    parser.add_argument(
        "--per-class", type=positive, default=400, help="JPEGs per class (10 classes)"
    )
    parser.add_argument("--batch-size", type=positive, default=64)
    parser.add_argument("--epochs", type=positive, default=3, help="timed epochs after the warm-up")
    parser.add_argument("--repeats", type=positive, default=3)
    parser.add_argument(
        "--wait-load", type=float, help="first wait for a 1-minute load average below this"
    )
    parser.add_argument("--max-wait", type=float, default=900.0, help="seconds, for --wait-load")
    parser.add_argument(
        "--steps-per-execution",
        type=positive,
        default=1,
        help="above 1, also time the device path with this many steps per compiled call",
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="train every method under the machine's mixed policy (bfloat16 on a native CPU)",
    )
    args = parser.parse_args()

    root = extract_subset(args.archive, args.per_class)
    started = time.perf_counter()
    config = DataConfig(source="folder", dir=str(root), test_split=0.1, validation_split=0.1)
    train = load_dataset(config, seed=0).train
    print(f"decoded {len(train)} training images in {time.perf_counter() - started:.1f} s")

    waited_ok = wait_for_load(args.wait_load, args.max_wait) if args.wait_load else None
    loads = [os.getloadavg()[0]]
    print(f"load average at the start: {loads[0]:.2f}", flush=True)
    methods: tuple[str, ...] = ("baseline", "pipeline", "device")
    if args.steps_per_execution > 1:
        methods += ("device_grouped",)
    with precision_policy(args.mixed_precision) as policy:
        print(f"dtype policy: {policy}", flush=True)
        rates, spreads = measure(methods, train, args, loads)

    summary: dict[str, object] = {
        "images": len(train),
        "batch_size": args.batch_size,
        "steps_per_execution": args.steps_per_execution,
        "timed_epochs": args.epochs,
        "repeats": args.repeats,
        "dtype_policy": policy,
        "machine": machine(),
        "load_average": {
            "start": round(loads[0], 2),
            "max": round(max(loads), 2),
            "mean": round(statistics.mean(loads), 2),
            "waited_below_threshold": waited_ok,
        },
    }
    for key, values in (("epoch_spread", spreads["wall"]), ("epoch_cpu_spread", spreads["cpu"])):
        summary[key] = {m: _spread(values[m], 3) | {"max": max(values[m])} for m in methods}
    for kind, label in (("train", "training"), ("input", "input alone")):
        summary[kind] = {f"{m}_images_per_s": _spread(v) for m, v in rates[kind].items()}
        for method in (m for m in methods[1:] if m in rates[kind]):
            ratios = [
                p / b for p, b in zip(rates[kind][method], rates[kind]["baseline"], strict=True)
            ]
            summary[kind][f"{method}_ratio"] = _spread(ratios, 2) | {
                "min": round(min(ratios), 2),
                "max": round(max(ratios), 2),
            }
            print(
                f"{label}: {method} / baseline = {statistics.mean(ratios):.2f}x "
                f"(range {min(ratios):.2f}-{max(ratios):.2f} over {args.repeats} repeats)"
            )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

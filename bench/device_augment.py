"""Milliseconds to read and augment one training batch on the device path, two ways.

- baseline, the device path before session 27 (and still under JAX): gather the batch from the
  uint8 split, cast it to float32, then `device_augment.augment` (flip as a select over a
  mirrored copy, pad-and-crop as a reflect-padded copy and a `take_along_axis`);
- folded, `device_augment.gather_folded`: flip and pad-and-crop are the index of one gather from
  the batch, with no padded copy.

`DeviceTrainer` runs whichever `folds_into_gather` picks for the backend (the output says which).
Both run compiled (tf.function, `--xla` for TensorFlow's XLA, or jax.jit under
`KERAS_BACKEND=jax`) on the same random uint8 split with a config's augmentation (default
`jobs/configs/fast.yaml`: flip and a 2-pixel crop; no rotation, shifts or zoom, which are never
folded), and must give the same pixels before anything is timed. Each repeat times `--calls`
calls of each, the order alternating; a method's figure is the median of its repeats.
Run it with `nice -n 10 .venv/bin/python bench/device_augment.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import ops  # noqa: E402

from cifar_ops.config.loading import load_run_config  # noqa: E402
from cifar_ops.data.device_augment import augment, folds_into_gather, gather_folded  # noqa: E402

FAST_YAML = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "fast.yaml"


def compiled(function: Callable[[Any, Any, Any], Any], xla: bool) -> Callable[[Any, Any, Any], Any]:
    """`function` compiled by the running backend, as the training step would be."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function, jit_compile=xla)


def milliseconds_per_call(
    step: Callable[[Any, Any, Any], Any], calls: int, split: Any, index: Any, seed: Any
) -> float:
    keras.ops.convert_to_numpy(step(split.value, index, seed))  # traced and run before the clock
    start = time.perf_counter()
    for _ in range(calls):
        out = step(split.value, index, seed)
    keras.ops.convert_to_numpy(out)  # JAX dispatches asynchronously: wait for the last one
    return (time.perf_counter() - start) / calls * 1000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=FAST_YAML, help="its augmentation")
    parser.add_argument("--images", type=int, default=38000, help="training split size")
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="TensorFlow: compile with XLA")
    args = parser.parse_args(argv)

    augmentation = load_run_config(args.config).augmentation
    rng = np.random.default_rng(0)
    shape = (args.images, args.size, args.size, 3)
    split = keras.Variable(rng.integers(0, 256, shape, dtype="uint8"), trainable=False)
    index = ops.convert_to_tensor(rng.permutation(args.images)[: args.batch].astype("int32"))
    seed = ops.convert_to_tensor(np.array([7, 3], "int32"))

    def baseline(images: Any, index: Any, seed: Any) -> Any:
        pixels = ops.cast(ops.take(images, index, axis=0), "float32")
        return augment(pixels, seed, augmentation)

    def folded(images: Any, index: Any, seed: Any) -> Any:
        return gather_folded(images, index, seed, augmentation)

    methods = {"baseline": compiled(baseline, args.xla), "folded": compiled(folded, args.xla)}
    outputs = [ops.convert_to_numpy(f(split.value, index, seed)) for f in methods.values()]
    if not np.array_equal(*outputs):
        raise SystemExit("the two methods gave different batches: nothing to compare")
    times: dict[str, list[float]] = {name: [] for name in methods}
    for repeat in range(args.repeats):
        order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
        for name in order:
            times[name].append(milliseconds_per_call(methods[name], args.calls, split, index, seed))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "backend": keras.backend.backend() + (" (XLA)" if args.xla else ""),
        "config": args.config.name,
        "augmentation": augmentation.model_dump(exclude_defaults=True),
        "batch": args.batch,
        "images": args.images,
        "trainer_runs": "folded" if folds_into_gather(augmentation) else "baseline",
        "ms_per_batch": {name: round(value, 3) for name, value in medians.items()},
        "ms_per_batch_repeats": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "ratio": round(medians["baseline"] / medians["folded"], 2),
    }
    print(json.dumps(result, indent=2))
    print(
        f"| {result['backend']} | {args.config.name} | {args.batch} "
        f"| {result['ms_per_batch']['baseline']} | {result['ms_per_batch']['folded']} "
        f"| {result['ratio']}x | {result['trainer_runs']} |"
    )
    return result


if __name__ == "__main__":
    main()

"""Training images/s of a config's model in bfloat16 against float32 on this CPU, in one run.

Why: `train.mixed_precision: true` means bfloat16 on a CPU only where the CPU has it natively
(cifar_ops/precision.py). This bench is the measurement behind that rule: on a CPU with
AVX512_BF16 or AMX, bfloat16 should beat float32; on one without, every bfloat16 op is emulated.
Both policies are forced here (the rule is bypassed), the same model, batch and random uint8
images, so the ratio is the precision's alone. Each policy trains `--warmup` untimed steps, then
`--repeats` timed fits of `--steps` steps; the ratio is bfloat16's median rate over float32's.

    python bench/precision.py                                  # fast.yaml and conv4_sgd.yaml
    python bench/precision.py --config jobs/configs/resnet20_fast.yaml --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cifar_ops.config import RunConfig, load_run_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("jobs/configs/fast.yaml", "jobs/configs/conv4_sgd.yaml")
POLICIES = ("float32", "mixed_bfloat16")


def images_per_second(
    config: RunConfig, policy: str, steps: int, warmup: int, repeats: int
) -> list[float]:
    """Rates of `repeats` timed fits of the config's model under `policy`."""
    import keras
    import numpy as np

    from cifar_ops.models import build_model

    batch = config.train.batch_size
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build_model(config.model, input_shape=(32, 32, 3), num_classes=10)
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch * steps)
    model.fit(images[: batch * warmup], labels[: batch * warmup], batch_size=batch, verbose=0)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(images, labels, batch_size=batch, verbose=0)
        rates.append(len(labels) / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the table; return each config's median images/s by policy (for the bench's test)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", action="append", type=Path, help="repeatable; default: " + ", ".join(CONFIGS)
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed fit")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from cifar_ops.precision import cpu_has_native_bfloat16

    print(f"CPU has native bfloat16 (flags in /proc/cpuinfo): {cpu_has_native_bfloat16()}")
    print("| config | batch | float32 images/s | bfloat16 images/s | bfloat16 / float32 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    results = {}
    for path in args.config or [REPO / c for c in CONFIGS]:
        config = load_run_config(path, [])
        medians = {}
        for policy in POLICIES:
            rates = images_per_second(config, policy, args.steps, args.warmup, args.repeats)
            medians[policy] = statistics.median(rates)
        batch = config.train.batch_size
        ratio = medians["mixed_bfloat16"] / medians["float32"]
        print(
            f"| {path.name} | {batch} | {medians['float32']:.0f} | {medians['mixed_bfloat16']:.0f}"
            f" | {ratio:.2f}x |"
        )
        results[path.name] = medians
    return results


if __name__ == "__main__":
    main()

"""Why does a run's validation accuracy collapse while its training batches do well? A check of
BatchNorm's running statistics, at the end of each of a run's first epochs (issue 17: fast_gpu.yaml
with airbench's switches scored 27-46% on validation in epochs 1-5 while train read 47-79%).

It trains through the product's own path (`run_locally`, a throwaway SQLite warehouse) and, after
each epoch, scores the validation split four ways with the same weights, then puts every variable
back, so training goes on untouched:

- `running`: inference mode, the running statistics (what the run's validation figure is);
- `reestimated`: the running statistics recomputed from `--batches` un-augmented training batches
  in training mode (each BatchNorm's momentum then forgets the old statistics within a few);
- `batch_stats`: training mode on the validation images themselves (their own batch statistics);
- `epsilon_1e-5`: running statistics, with every BatchNorm's epsilon raised to 1e-5.

If `reestimated` is far above `running`, the weights are fine and the running statistics are
stale or corrupted; if `batch_stats` is also low, the weights themselves are what score low.

    python bench/batch_norm_check.py --config jobs/configs/fast_gpu.yaml --epochs-checked 5 \\
        --set data.source=folder --set data.dir=.cache/data [--set ...]

Results go to stdout as one JSON line per epoch. The run stops after `--epochs-checked` epochs.
`--model RUN_DIR/model.keras` instead scores a finished run's model (validation and test splits
of the same config) the same four ways, without training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def accuracy(model: Any, images: np.ndarray, labels: np.ndarray, training: bool) -> float:
    """Top-1 accuracy of direct model calls in batches of 500 (training=True updates nothing
    that is kept: the caller restores every variable afterwards)."""
    right = 0
    for start in range(0, len(labels), 500):
        batch = images[start : start + 500].astype("float32")
        logits = np.asarray(model(batch, training=training))
        right += int((logits.argmax(axis=1) == labels[start : start + 500]).sum())
    return right / len(labels)


def check(
    model: Any, split: Any, train: Any, batches: int, batch_size: int, seed: int
) -> dict[str, Any]:
    """The four scores of one split with the model's current weights, which it leaves as found."""
    import keras

    saved = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    norms = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    x, y = split.images, split.labels
    result: dict[str, Any] = {"running": accuracy(model, x, y, training=False)}
    epsilons = [layer.epsilon for layer in norms]
    for layer in norms:
        layer.epsilon = 1e-5
    result["epsilon_1e-5"] = accuracy(model, x, y, training=False)
    for layer, eps in zip(norms, epsilons, strict=True):
        layer.epsilon = eps
    result["batch_stats"] = accuracy(model, x, y, training=True)
    _restore(model, saved)
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        chosen = rng.choice(len(train.labels), size=batch_size, replace=False)
        model(train.images[chosen].astype("float32"), training=True)
    result["reestimated"] = accuracy(model, x, y, training=False)
    _restore(model, saved)
    return result


def make_check(validation: Any, train: Any, batches: int, batch_size: int, stop_after: int) -> Any:
    import keras

    class BatchNormCheck(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            started = time.perf_counter()
            logged = (logs or {}).get("val_accuracy")
            result: dict[str, Any] = {"epoch": epoch + 1, "logged_val_accuracy": logged}
            result.update(check(self.model, validation, train, batches, batch_size, epoch))
            result["check_seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps(result), flush=True)
            if epoch + 1 >= stop_after:
                raise KeyboardInterrupt  # the run is interrupted here (resumable, not finished)

    return BatchNormCheck()


def _restore(model: Any, saved: list[np.ndarray]) -> None:
    for variable, value in zip(model.weights, saved, strict=True):
        variable.assign(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE overrides")
    parser.add_argument("--epochs-checked", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="training batches to re-estimate")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--model", type=Path, help="score this saved .keras model of the config instead of training"
    )
    args = parser.parse_args(argv)

    from cifar_ops.config import load_config
    from cifar_ops.data.dataset import load_dataset
    from cifar_ops.executors.local import run_locally

    config = load_config(args.config, overrides=args.set)
    dataset = load_dataset(config.data, config.seed)
    batch_size = config.train.batch_size
    if args.model:
        from cifar_ops.inference import load_saved_model

        model = load_saved_model(args.model).model
        for name in ("validation", "test"):
            split = dataset.split(name)
            scores = check(model, split, dataset.train, args.batches, batch_size, 0)
            print(json.dumps({"model": str(args.model), "split": name, **scores}), flush=True)
        return
    callback = make_check(
        dataset.validation, dataset.train, args.batches, batch_size, args.epochs_checked
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bn-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):  # the check stops the run
        run_locally(config, callbacks=[callback], database_url=f"sqlite:///{workdir / 'wh.db'}")


if __name__ == "__main__":
    main()

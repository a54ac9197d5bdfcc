"""One synthetic training task through the engine on the device path, for either Keras backend.

Run as `KERAS_BACKEND=jax python -m tests.backend_task OUT --train --run --load MODEL.keras
--refuse-host` (a subprocess: the backend is fixed when Keras is imported; one process for every
action, since each new one spends ~9 s importing JAX and Keras). `--train` trains the `fast` net
(whitened stem, dirac init) with ShiftScaledSGD on a one-cycle schedule with label smoothing,
early stopping and per-epoch checkpoints and saves its model.keras; `--run` runs a tiny config
through `runner.execute`; `--load` loads a model saved under any backend and saves its held-out
predictions; `--refuse-host` plans the host (tf.data) path and reports the error it raises. Prints
one JSON line: each action's report under its name, and whether TensorFlow was imported.
`--no-tensorflow` makes any import of TensorFlow fail, as on a machine without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tests.engine_helpers import tiny_config
from tests.memory_sink import MemorySink

CONFIG = {
    "data": {"pipeline": "device", "synthetic_images": 640},
    "augmentation": {"flip": "alternating", "crop_padding": 2},
    "model": {
        "name": "fast",
        "widths": [16, 32, 32],
        "stem_filters": 24,
        "whiten": True,
        "dirac_init": True,
    },
    "optimizer": {
        "name": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "batch_norm_lr_scale": 4,
        "weight_decay": 0.0005,
    },
    "schedule": {"name": "one_cycle"},
    "train": {
        "epochs": 4,
        "batch_size": 64,
        "label_smoothing": 0.1,
        "early_stopping": {"patience": 3},
    },
}


def held_out():
    from cifar_ops.data import load_dataset

    config = tiny_config(**CONFIG)
    return config, load_dataset(config.data, config.seed)


def train(out: Path) -> dict:
    import keras

    from cifar_ops import training
    from cifar_ops.checkpoints import RunDirectory
    from cifar_ops.models import build_model
    from cifar_ops.plan import build_plan

    config, dataset = held_out()
    training.seed_everything(config.seed)
    model = build_model(
        config.model,
        input_shape=dataset.train.images.shape[1:],
        num_classes=len(dataset.class_names),
    )
    plan = build_plan(config, model, train_images=len(dataset.train))
    run_dir = RunDirectory("task", root=out)
    run_dir.create(config, dataset.class_names)
    sink = MemorySink()
    result = training.fit(model, plan, dataset, sink=sink, run_id="task", run_dir=run_dir)
    run_dir.save_model(model)
    return {
        "backend": keras.backend.backend(),
        "epochs": [r.epoch for r in result.history],
        "model": str(run_dir.model_path),
        **predictions(model, dataset, out),
    }


def predictions(model, dataset, out: Path) -> dict:
    import keras

    probabilities = model.predict(dataset.test.images.astype("float32"), verbose=0)
    path = out / f"predictions-{keras.backend.backend()}.npy"
    np.save(path, probabilities)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == dataset.test.labels))
    return {"accuracy": accuracy, "predictions": str(path)}


def whole_run(out: Path) -> dict:
    """`runner.execute` of a tiny device-path config with flip TTA; artifacts under `out`."""
    import os

    import keras

    os.environ["CIFAR_OPS_ARTIFACTS"] = str(out)
    from cifar_ops.runner import execute

    sink = MemorySink()
    config = tiny_config(
        data={"pipeline": "device"},
        augmentation={"flip": True, "crop_padding": 2},
        evaluation={"tta": "flip"},
    )
    outcome = execute(config, sink=sink)
    finish = sink.finishes[outcome.run_id]
    return {
        "backend": keras.backend.backend(),
        "status": str(outcome.status),
        "accuracy": finish.test_accuracy,
        "model": str(outcome.model_path),
    }


def register_custom_objects() -> None:
    """Import the modules whose layers, loss, schedule and optimizer a saved model names."""
    import cifar_ops.losses  # noqa: F401
    import cifar_ops.models  # noqa: F401
    import cifar_ops.optimizers  # noqa: F401
    import cifar_ops.schedules  # noqa: F401


class NoTensorFlow:
    """A meta-path finder that refuses TensorFlow, as if it were not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")


def refuse_host() -> dict:
    """The host path's plan under this backend: the ConfigError's text, or None if it plans."""
    import keras

    from cifar_ops.errors import ConfigError
    from cifar_ops.plan import build_plan

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()])
    try:
        build_plan(tiny_config(), model, train_images=100)
        refused = None
    except ConfigError as exc:
        refused = str(exc)
    device = build_plan(tiny_config(data={"pipeline": "device"}), model, train_images=100)
    return {"refused": refused, "device_pipeline": device.pipeline}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", action="store_true", help="train the task, save its model")
    parser.add_argument("--run", action="store_true", help="a whole run through the runner")
    parser.add_argument("--load", type=Path, help="a .keras file to load and predict with")
    parser.add_argument("--refuse-host", action="store_true", help="plan the host path")
    parser.add_argument("--no-tensorflow", action="store_true")
    args = parser.parse_args(argv)
    if args.no_tensorflow:
        sys.meta_path.insert(0, NoTensorFlow())
    import keras

    for action in ("train", "run", "load"):
        (args.out / action).mkdir(parents=True, exist_ok=True)
    report: dict = {"backend": keras.backend.backend()}
    if args.train:
        report["train"] = train(args.out / "train")
    if args.run:
        report["run"] = whole_run(args.out / "run")
    if args.load:
        _, dataset = held_out()
        register_custom_objects()
        model = keras.models.load_model(args.load)  # compiled: optimizer and schedule too
        report["load"] = predictions(model, dataset, args.out / "load")
    if args.refuse_host:
        report["host"] = refuse_host()
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Training seconds until a config's held-out accuracy reaches a target, against a baseline config
trained in the same run: airbench's measure ("94% in 3.3 s on one A100") for the product's engine.

Each config goes through the product's own parts: `load_dataset` (the held-out test split),
`build_model`, `fit_to_data` (whitening), `compile_phase` (optimizer, schedule, loss, XLA) under
its precision policy, the config's data path (`make_pipeline`, or on `data.pipeline: device` the
trainer that augments inside the compiled step, which also runs on KERAS_BACKEND=jax), the
run's per-step weight callbacks (`train.lookahead`, `model.whiten_bias_epochs`), and
`predict_split` with the config's test-time augmentation. Only the fit is timed, one epoch at a
time; held-out accuracy is scored after each epoch outside the clock. The first epoch includes
tracing/XLA compilation, so the report also gives the total with the first epoch counted at the
median epoch time ("warm"), as airbench excludes its compile warm-up; images/s is at that median.

    python bench/time_to_accuracy.py --config jobs/configs/fast_gpu.yaml \\
        --baseline jobs/configs/fast.yaml --target 0.94 \\
        --set data.source=folder --set data.dir=.cache/data

Prints one JSON line per config, then the ratio baseline seconds / candidate seconds to the
target (or, when either never reaches it, each one's final accuracy).

A one-cycle schedule lifts accuracy most in its last epochs, so a config tends to reach the target
near the end of whatever length it is given: to find how few epochs a recipe needs, shorten it
(`--config-set train.epochs=3`) and compare with the baseline at its own length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import keras

from cifar_ops import training
from cifar_ops.config import load_run_config
from cifar_ops.data import load_dataset
from cifar_ops.evaluation import predict_split
from cifar_ops.models import build_model, fit_to_data
from cifar_ops.plan import build_plan
from cifar_ops.precision import precision_policy


def time_config(path: Path, overrides: list[str], target: float) -> dict:
    """Train `path` epoch by epoch; seconds per epoch and held-out accuracy after each."""
    import numpy as np

    config = load_run_config(path, overrides)
    training.seed_everything(config.seed, xla=config.train.xla)
    dataset = load_dataset(config.data, config.seed)
    epochs: list[dict] = []
    with precision_policy(config.train.mixed_precision):
        model, plan = compiled_model(config, dataset)
        callbacks = training.weight_callbacks(model, plan, plan.phases[0])
        fit_epoch = epoch_fitter(model, plan, dataset, callbacks)
        for epoch in range(config.train.epochs):
            start = time.perf_counter()
            fit_epoch(epoch)
            seconds = time.perf_counter() - start
            probabilities = predict_split(model, dataset.test.images, tta=config.evaluation.tta)
            accuracy = float(np.mean(probabilities.argmax(axis=1) == dataset.test.labels))
            epochs.append({"epoch": epoch + 1, "seconds": seconds, "accuracy": accuracy})
            print(f"  {path.name} epoch {epoch + 1}: {accuracy:.4f} ({seconds:.1f} s)", flush=True)
    summary = summarise(str(path), model.count_params(), len(dataset.train), epochs, target)
    return {"pipeline": plan.pipeline, "backend": keras.backend.backend(), **summary}


def compiled_model(config, dataset):
    """The config's model, built, whitened and compiled for its first phase, and its plan."""
    model = build_model(
        config.model,
        input_shape=dataset.train.images.shape[1:],
        num_classes=len(dataset.class_names),
    )
    plan = build_plan(config, model, train_images=len(dataset.train.labels))
    training.apply_l2(model, plan.l2, plan.shift_l2)
    fit_to_data(model, dataset.train.images)
    training.compile_phase(model, plan, plan.phases[0])
    return model, plan


def epoch_fitter(model, plan, dataset, callbacks=()):
    """A function that trains one more epoch on the plan's data path (host or device), with
    `callbacks`: the run's per-step weight callbacks (lookahead, the whitening-bias freeze), so
    the bench times and scores the recipe the config describes."""
    if plan.pipeline == "host":
        from cifar_ops.data import make_pipeline
        from cifar_ops.data.pipeline import EpochSetter, epoch_variable

        counter = epoch_variable()
        train = make_pipeline(
            dataset.train,
            batch_size=plan.batch_size,
            training=True,
            augmentation=plan.augmentation,
            seed=plan.seed,
            epoch=counter,
        )

        def host_epoch(epoch: int) -> None:
            model.fit(
                train,
                initial_epoch=epoch,
                epochs=epoch + 1,
                verbose=0,
                shuffle=False,
                callbacks=[EpochSetter(counter), *callbacks],
            )

        return host_epoch
    from cifar_ops.data.device import StepFeed, device_inputs

    trainer, _, _ = device_inputs(
        model,
        dataset.train,
        dataset.validation,
        augmentation=plan.augmentation,
        batch_size=plan.batch_size,
        seed=plan.seed,
        jit_compile=plan.xla if keras.backend.backend() == "tensorflow" else "auto",
        steps_per_execution=plan.steps_per_execution,
    )

    def device_epoch(epoch: int) -> None:
        labels = dataset.train.labels
        feed = StepFeed(labels, batch_size=plan.batch_size, seed=plan.seed, epoch=epoch)
        trainer.fit(
            feed, initial_epoch=epoch, epochs=epoch + 1, verbose=0, callbacks=list(callbacks)
        )

    return device_epoch


def summarise(name: str, params: int, images: int, epochs: list[dict], target: float) -> dict:
    """Seconds to the first epoch at or above `target`: as measured, and warm (see the top)."""
    seconds = [e["seconds"] for e in epochs]
    typical = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    reached = next((e["epoch"] for e in epochs if e["accuracy"] >= target), None)
    upto = seconds[: reached or len(seconds)]
    return {
        "config": name,
        "params": params,
        "train_images": images,
        "target": target,
        "reached_at_epoch": reached,
        "seconds_to_target": sum(upto) if reached else None,
        "warm_seconds_to_target": typical + sum(upto[1:]) if reached else None,
        "final_accuracy": epochs[-1]["accuracy"],
        "best_accuracy": max(e["accuracy"] for e in epochs),
        "first_epoch_seconds": seconds[0],
        "median_epoch_seconds": typical,
        "images_per_second": images / typical if typical > 0 else None,
        "epochs": epochs,
    }


def compare(candidate: dict, baseline: dict) -> str:
    if candidate["reached_at_epoch"] and baseline["reached_at_epoch"]:
        ratio = baseline["warm_seconds_to_target"] / candidate["warm_seconds_to_target"]
        return (
            f"to {candidate['target']:.2%}: {candidate['warm_seconds_to_target']:.1f} s vs "
            f"baseline {baseline['warm_seconds_to_target']:.1f} s (warm): speed-up {ratio:.2f}x"
        )
    return (
        f"target {candidate['target']:.2%} not reached by both: final accuracy "
        f"{candidate['final_accuracy']:.4f} vs baseline {baseline['final_accuracy']:.4f}; "
        f"epoch time {candidate['median_epoch_seconds']:.1f} s vs "
        f"{baseline['median_epoch_seconds']:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the candidate run config")
    parser.add_argument("--baseline", type=Path, help="a run config to time in the same run")
    parser.add_argument("--target", type=float, default=0.94, help="held-out accuracy to reach")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="KEY=VALUE for both configs"
    )
    parser.add_argument(
        "--config-set", action="append", default=[], help="KEY=VALUE for the candidate only"
    )
    parser.add_argument(
        "--baseline-set", action="append", default=[], help="KEY=VALUE for the baseline only"
    )
    args = parser.parse_args(argv)
    candidate = time_config(args.config, args.overrides + args.config_set, args.target)
    print(json.dumps(candidate), flush=True)
    if args.baseline is None:
        return
    baseline = time_config(args.baseline, args.overrides + args.baseline_set, args.target)
    print(json.dumps(baseline), flush=True)
    print(compare(candidate, baseline), flush=True)


if __name__ == "__main__":
    main()

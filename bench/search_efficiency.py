"""What pruning and sampling save: one search space run as a full grid, with ASHA and with median
pruning, and TPE against random at an equal epoch budget, through the product's own search path
(`cifar_ops.executors.local.run_locally`: the Optuna study in a SQLite warehouse of its own).

Two spaces (`--space`): 18 points of the `fast` net on its one-cycle recipe (learning rate x
weight decay x block widths), or seed 001's own 24-point grid on `conv4_bn` at a constant rate
(learning rate x momentum x batch size x dropout); both on a fixed subset of the shared CIFAR-10
JPEGs with a held-out test part (`data.test_split`, fixed seed, so every search scores the same
images). For each search it prints the held-out test accuracy of the trial a user would pick (the
finished trial with the best validation accuracy; a pruned trial has no test score) beside the
best test accuracy of any finished trial (an oracle pick, for reference), the epochs trained (the
warehouse's epoch rows) and the wall time, then a table. Target: ASHA within 0.5 points of the
full grid with at most 40% of its epochs.

    mkdir -p .cache/jpeg && tar xzf /work/shared/data/cifar10-train-jpeg.tar.gz -C .cache/jpeg
    python bench/search_efficiency.py --data-dir .cache/jpeg/train --limit 10000 --epochs 4 \\
        --workdir .cache/search-bench

`--limit` caps the images of each split (train, validation, held-out test) and `--epochs` is the
most any trial trains. `--only grid,asha` runs a subset. Results go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

# learning rate x weight decay x widths of the `fast` net: 3 x 3 x 2 = 18 points
SPACE: dict[str, list[Any]] = {
    "optimizer.learning_rate": [0.1, 0.2, 0.4],
    "optimizer.weight_decay": [0.0005, 0.00133, 0.003],
    "model.widths": [[32, 64, 64], [64, 128, 128]],
}
SAMPLED_TRIALS = 6  # TPE and random each: 6 full trials, the same epoch budget for both

# Seed 001's own grid (jobs/configs/grids/conv4_sgd.yaml) on the `conv4_bn` net, trained with a
# constant learning rate: 3 x 2 x 2 x 2 = 24 points.
CONV4_SPACE: dict[str, list[Any]] = {
    "optimizer.learning_rate": [0.005, 0.01, 0.05],
    "optimizer.momentum": [0.0, 0.9],
    "train.batch_size": [32, 64],
    "model.dropout": [0.25, 0.5],
}


def subset(data_dir: str, limit: int) -> dict[str, Any]:
    """The same fixed, held-out subset of the JPEG folder for every space and search."""
    return {
        "source": "folder",
        "dir": data_dir,
        "limit": limit,
        "validation_split": 0.1,
        "test_split": 0.2,
    }


def base_config(data_dir: str, limit: int, epochs: int) -> dict[str, Any]:
    """jobs/configs/fast.yaml's recipe on a fixed, held-out subset of the JPEG folder."""
    return {
        "seed": 42,
        "data": subset(data_dir, limit),
        "augmentation": {"flip": True, "crop_padding": 2},
        "model": {
            "name": "fast",
            "widths": [64, 128, 128],
            "stem_filters": 24,
            "batch_norm_momentum": 0.6,
            "whiten": True,
            "dirac_init": True,
        },
        "optimizer": {
            "name": "sgd",
            "learning_rate": 0.2,
            "momentum": 0.85,
            "nesterov": True,
            "weight_decay": 0.00133,
            "batch_norm_lr_scale": 64,
        },
        "schedule": {"name": "one_cycle", "peak_fraction": 0.2, "start_fraction": 0.2},
        "train": {
            "epochs": epochs,
            "batch_size": 128,
            "label_smoothing": 0.2,
            "mixed_precision": True,  # bfloat16 on a CPU, float16 on a GPU
        },
        "evaluation": {"log_predictions": False},
    }


def conv4_base_config(data_dir: str, limit: int, epochs: int) -> dict[str, Any]:
    """Seed 001's recipe as conv4_sgd.yaml first read it (SGD at a constant rate; the file now
    ships a one-cycle recipe) on the same subset, without early stopping (a search's epochs are
    the pruner's to cut) and with flips and crops, so 4,000 training images still give
    validation curves that rise for `epochs`. Kept as it was: the recorded searches ran on it."""
    return {
        "seed": 42,
        "data": subset(data_dir, limit),
        "augmentation": {"flip": True, "crop_padding": 4},
        "model": {"name": "conv4_bn", "filters": [32, 32, 64, 64], "dense_units": 128},
        "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
        "train": {"epochs": epochs, "batch_size": 64},
        "evaluation": {"log_predictions": False},
    }


SPACES = {"fast": (base_config, SPACE), "conv4": (conv4_base_config, CONV4_SPACE)}


def searches(space: dict[str, list[Any]], sampled_trials: int) -> dict[str, dict[str, Any]]:
    """The compared searches' `search:` sections, by name."""
    grid = {"method": "grid", "parameters": space}
    sampled = {"parameters": space, "trials": sampled_trials, "seed": 0}
    return {
        "grid": grid,
        "asha": {**grid, "pruner": "asha", "pruning": {"min_epochs": 1, "reduction_factor": 3}},
        "median": {**grid, "pruner": "median", "pruning": {"min_epochs": 1, "warmup_trials": 3}},
        "tpe": {**sampled, "method": "tpe"},
        "random": {**sampled, "method": "random"},
    }


def run_search(
    name: str, base: dict[str, Any], search: dict[str, Any], workdir: Path, parallel: int
) -> dict[str, Any]:
    """Run one search in its own experiment; its best test accuracy, epochs and wall time."""
    from cifar_ops.config import load_config
    from cifar_ops.executors.local import run_locally
    from cifar_ops.warehouse.store import open_store

    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**base, "experiment": f"bench-{name}", "search": search}))
    url = f"sqlite:///{workdir / 'warehouse.db'}"
    start = time.perf_counter()
    outcomes = run_locally(load_config(path), database_url=url, parallel=parallel)
    seconds = time.perf_counter() - start
    with open_store(url) as store:
        epochs = sum(len(store.epochs(outcome.run_id)) for outcome in outcomes)
    finished = [o.finish for o in outcomes if o.finish.test_accuracy is not None]
    picked = max(finished, key=lambda f: f.val_accuracy or 0.0) if finished else None
    statuses = [str(o.status) for o in outcomes]
    return {
        "search": name,
        "trials": len(outcomes),
        "pruned": statuses.count("pruned"),
        "failed": statuses.count("failed"),
        # what a user gets: the finished trial with the best validation accuracy, scored on the
        # held-out test part it was never picked by
        "picked_test_accuracy": picked.test_accuracy if picked else None,
        # the best test score among finished trials: an oracle pick, for reference only
        "best_test_accuracy": max(f.test_accuracy for f in finished) if finished else None,
        "epochs": epochs,
        "wall_seconds": round(seconds, 1),
    }


def table(results: list[dict[str, Any]]) -> str:
    """The results side by side, epochs also as a share of the full grid's."""
    grid_epochs = next((r["epochs"] for r in results if r["search"] == "grid"), None)
    lines = [
        f"{'search':8} {'trials':>6} {'pruned':>6} {'picked test':>11} {'best test':>9} "
        f"{'epochs':>6} {'of grid':>7} {'wall s':>8}"
    ]
    for r in results:
        picked, best = (
            f"{r[key]:.4f}" if r[key] is not None else "-"
            for key in ("picked_test_accuracy", "best_test_accuracy")
        )
        share = f"{r['epochs'] / grid_epochs:.0%}" if grid_epochs else "-"
        lines.append(
            f"{r['search']:8} {r['trials']:>6} {r['pruned']:>6} {picked:>11} {best:>9} "
            f"{r['epochs']:>6} {share:>7} {r['wall_seconds']:>8}"
        )
    return "\n".join(lines)


def main(
    argv: list[str] | None = None,
    base: dict[str, Any] | None = None,
    space: dict[str, list[Any]] | None = None,
) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="the extracted JPEG folder (train/<class>/*.jpg)")
    parser.add_argument("--limit", type=int, default=10_000, help="images per split at most")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of a full trial")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/search-bench"))
    parser.add_argument("--parallel", type=int, default=1, help="worker processes per search")
    parser.add_argument("--only", default="grid,asha,median,tpe,random")
    parser.add_argument("--sampled-trials", type=int, default=SAMPLED_TRIALS)
    parser.add_argument(
        "--space",
        choices=sorted(SPACES),
        default="fast",
        help="fast: the fast net's one-cycle recipe; conv4: seed 001's grid at a constant rate",
    )
    args = parser.parse_args(argv)
    make_base, default_space = SPACES[args.space]
    if base is None:
        if not args.data_dir:
            parser.error("--data-dir is required")
        base = make_base(str(Path(args.data_dir).resolve()), args.limit, args.epochs)
    args.workdir.mkdir(parents=True, exist_ok=True)
    chosen = searches(space or default_space, args.sampled_trials)
    results = []
    for name in args.only.split(","):
        result = run_search(name, base, chosen[name], args.workdir, args.parallel)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(table(results))
    return results


if __name__ == "__main__":
    main()

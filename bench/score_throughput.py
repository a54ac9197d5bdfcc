"""Batch scoring images/s: `cifar-ops score`'s code path against `predict` called once per image.

Both use the same saved model (by default ResNet-20 of jobs/configs/resnet20.yaml, `--config`
picks another; 32 px, 10 classes; its weights do not change the arithmetic, so it is saved
untrained) in the same process:

- score: `score_images` over a folder of the shared CIFAR-10 JPEGs (decode in a thread pool,
  batches of 256, one bulk write per batch to a SQLite warehouse), then the CSV/Parquet files;
- per image: `predict_files(saved, [path])` for each image of a sample, as a loop over
  `cifar-ops predict` would do without the process start;
- per image through the CLI: `cifar-ops predict MODEL IMAGE --json` in a new process for each of
  `--cli-images` images, which is what predicting a folder meant before `score` (the process
  start, imports and model load are paid per image). Measured once per repeat on a few images,
  since each call takes seconds.

The per-image rate is steady after its first call, so each repeat measures it on `--per-image`
new images, and score on the whole folder into a fresh warehouse (after one warm-up of each);
repeats alternate which goes first, since the machine is shared.
Run it with `nice -n 10 .venv/bin/python bench/score_throughput.py --per-class 200`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yaml  # noqa: E402
from train_throughput import SHARED_ARCHIVE, extract_subset  # noqa: E402

from cifar_ops.config import RunConfig  # noqa: E402
from cifar_ops.inference import load_saved_model, predict_files  # noqa: E402
from cifar_ops.models import build_model  # noqa: E402
from cifar_ops.scoring import open_source, score_images  # noqa: E402
from cifar_ops.scoring.output import write_files  # noqa: E402
from cifar_ops.warehouse import open_store, scores  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]  # fmt: skip


def save_model(where: Path, config_name: str) -> Path:
    raw = yaml.safe_load((REPO / "jobs" / "configs" / f"{config_name}.yaml").read_text())
    config = RunConfig.model_validate(raw)
    model = build_model(config.model, input_shape=(32, 32, 3), num_classes=len(CLASSES))
    path = where / "model.keras"
    model.save(path)
    (where / "classes.json").write_text(json.dumps(CLASSES))
    return path


def per_image_rate(saved, files: list[Path]) -> float:  # noqa: ANN001 - a SavedModel
    started = time.perf_counter()
    for path in files:
        predict_files(saved, [path])
    return len(files) / (time.perf_counter() - started)


def cli_rate(model_path: Path, files: list[Path]) -> float:
    """Images/s of `cifar-ops predict` run once per image, as a shell loop over a folder would."""
    command = [sys.executable, "-m", "cifar_ops", "predict", str(model_path)]
    started = time.perf_counter()
    for path in files:
        subprocess.run([*command, str(path), "--json"], check=True, capture_output=True)
    return len(files) / (time.perf_counter() - started)


def score_rate(saved, folder: Path, database: Path, out: Path) -> float:  # noqa: ANN001
    """Images/s of one whole scoring into a fresh warehouse, files included."""
    with open_store(f"sqlite:///{database}") as store:
        started = time.perf_counter()
        result = score_images(saved, open_source(str(folder)), store, model_ref="bench", top_k=3)
        write_files(*scores.rows(store, result.scoring_id), str(out))
        total = time.perf_counter() - started
    assert result.scored == result.images and not result.unreadable
    return result.scored / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200, help="JPEGs of each class scored")
    parser.add_argument("--per-image", type=int, default=60, help="images predicted one by one")
    parser.add_argument("--cli-images", type=int, default=4, help="`cifar-ops predict` calls")
    parser.add_argument("--config", default="resnet20", help="jobs/configs/<name>.yaml's model")
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of measurements")
    args = parser.parse_args()

    folder = extract_subset(SHARED_ARCHIVE, args.per_class)
    per_image, batch, cli = [], [], []
    with tempfile.TemporaryDirectory(prefix="score-bench-") as scratch:
        work = Path(scratch)
        model_path = save_model(work, args.config)
        saved = load_saved_model(model_path)
        source = open_source(str(folder))
        files = [Path(source.root) / name for name in source.paths]
        predict_files(saved, files[:1])  # warm-up: traces the predict function
        # warm-up: a full batch and a short one, so no timed scoring traces a new batch shape
        score_rate(saved, extract_subset(SHARED_ARCHIVE, 30), work / "warm.db", work / "warm")
        for repeat in range(args.repeats):
            sample = files[1 + repeat * args.per_image : 1 + (repeat + 1) * args.per_image]
            database, out = work / f"bench-{repeat}.db", work / f"out-{repeat}"
            if repeat % 2 == 0:  # alternate which goes first: the machine is shared
                per_image.append(per_image_rate(saved, sample))
                batch.append(score_rate(saved, folder, database, out))
            else:
                batch.append(score_rate(saved, folder, database, out))
                per_image.append(per_image_rate(saved, sample))
            cli.append(cli_rate(model_path, sample[: args.cli_images]))
            shown = f"score {batch[-1]:.1f}/s, per image {per_image[-1]:.1f}/s"
            shown += f", cli per image {cli[-1]:.2f}/s"
            print(f"repeat {repeat + 1}: {shown}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1f} ± {sd:.1f}"

    ratios = [b / p for b, p in zip(batch, per_image, strict=True)]
    cli_ratios = [b / c for b, c in zip(batch, cli, strict=True)]
    report = {
        "model": f"{args.config} ({saved.model.count_params():,} parameters)",
        "images_scored": len(source.paths),
        "images_predicted_one_by_one": args.per_image,
        "score_images_per_second": spread(batch),
        "per_image_predict_images_per_second": spread(per_image),
        "speedup": spread(ratios),
        "images_predicted_by_cli_calls": args.cli_images,
        "cli_predict_images_per_second": f"{statistics.mean(cli):.2f}",
        "speedup_vs_cli_calls": spread(cli_ratios),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Batch scoring images/s: `cifar-ops score`'s code path against `predict` called once per image.

Both use the same saved model (by default ResNet-20 of jobs/configs/resnet20.yaml, `--config`
picks another; 32 px, 10 classes; its weights do not change the arithmetic, so it is saved
untrained) in the same process:

- score: `score_images` over a folder of the shared CIFAR-10 JPEGs (decode in a thread pool,
  batches of 256, one bulk write per batch to a SQLite warehouse), then the CSV/Parquet files;
- per image: `predict_files(saved, [path])` for each image of a sample, as a loop over
  `cifar-ops predict` would do without the process start.

The per-image rate is steady after its first call, so it is measured on `--per-image` images (its
first call is a warm-up, not counted), and score on the whole folder after a warm-up batch.
Run it with `nice -n 10 .venv/bin/python bench/score_throughput.py --per-class 200`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200, help="JPEGs of each class scored")
    parser.add_argument("--per-image", type=int, default=100, help="images predicted one by one")
    parser.add_argument("--config", default="resnet20", help="jobs/configs/<name>.yaml's model")
    args = parser.parse_args()

    folder = extract_subset(SHARED_ARCHIVE, args.per_class)
    with tempfile.TemporaryDirectory(prefix="score-bench-") as scratch:
        work = Path(scratch)
        saved = load_saved_model(save_model(work, args.config))
        source = open_source(str(folder))
        files = [Path(source.root) / name for name in source.paths]

        predict_files(saved, files[:1])  # warm-up: traces the predict function
        started = time.perf_counter()
        for path in files[1 : args.per_image + 1]:
            predict_files(saved, [path])
        per_image_rate = args.per_image / (time.perf_counter() - started)

        with open_store(f"sqlite:///{work / 'warehouse.db'}") as store:
            warm = open_source(str(folder))
            sample = type(warm)(warm.root, warm.paths[:256])
            score_images(saved, sample, store, model_ref="warm-up", top_k=1)  # its own scoring
            started = time.perf_counter()
            result = score_images(saved, source, store, model_ref="bench", top_k=3)
            write_files(*scores.rows(store, result.scoring_id), str(work / "out"))
            total = time.perf_counter() - started
        score_rate = result.scored / total

    report = {
        "model": f"{args.config} ({saved.model.count_params():,} parameters)",
        "images": len(source.paths),
        "scored": result.scored,
        "score_images_per_second": round(score_rate, 1),
        "score_loop_images_per_second": round(result.images_per_second or 0.0, 1),
        "per_image_predict_images_per_second": round(per_image_rate, 1),
        "speedup": round(score_rate / per_image_rate, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

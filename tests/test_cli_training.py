"""`cifar-ops run / evaluate / predict` end to end through the CLI, on the real warehouse store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.data.synthetic import load_synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.store import open_store
from tests.conftest import REPO
from tests.engine_helpers import TINY

FOLDER_CLASSES = ("circle", "stripes")


def write_config(path: Path, **changes: object) -> Path:
    raw = json.loads(json.dumps(TINY))
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def invoke(runner: CliRunner, args: list[str], url: str) -> object:
    return runner.invoke(app, args, env={"CIFAR_OPS_DATABASE_URL": url})


def make_image_folder(root: Path, per_class: int = 40) -> Path:
    """`root/<class>/*.png`: two classes of 16 px images a tiny net tells apart."""
    source = load_synthetic(per_class * 2, 2, 16, seed=3)
    part = source.parts["train"]
    images = part.load(np.arange(len(part)))
    for i, (image, label) in enumerate(zip(images, part.labels, strict=True)):
        folder = root / FOLDER_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One run trained on an image folder through the CLI, shared by the evaluate/predict tests."""
    base = tmp_path_factory.mktemp("folder-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setenv("CIFAR_OPS_ARTIFACTS", str(base / "runs"))
        patch.setenv("CIFAR_OPS_DATA_CACHE", str(base / "cache"))
        folder = make_image_folder(base / "images")
        config = write_config(
            base / "folder.yaml",
            data={"source": "folder", "dir": str(folder), "image_size": 16, "test_split": 0.25},
        )
        url = f"sqlite:///{base / 'warehouse.db'}"
        result = invoke(CliRunner(), ["run", "--config", str(config), "--json"], url)
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        yield {"payload": payload, "folder": folder, "url": url, "base": base}


def test_run_logs_to_the_warehouse_and_prints_json(
    cli_runner: CliRunner, database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)  # PostgreSQL is migrated once, never by a run
    config = write_config(tmp_path / "tiny.yaml", train={"epochs": 2, "batch_size": 32})
    result = invoke(cli_runner, ["run", "--config", str(config), "--json"], database_url)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded" and Path(payload["model_path"]).is_file()
    assert payload["metrics"]["test_accuracy"] > 0.5
    with open_store(database_url) as store:
        run = store.get_run(payload["run_id"])
        assert run.summary.status == "succeeded"
        assert [e.epoch for e in store.epochs(payload["run_id"])] == [1, 2]
        assert run.summary.test_accuracy == pytest.approx(payload["metrics"]["test_accuracy"])


def test_run_shows_progress_and_a_summary_table(
    cli_runner: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "tiny.yaml", train={"epochs": 1, "batch_size": 64})
    result = invoke(cli_runner, ["run", "--config", str(config), "--run-id", "c" * 32], sqlite_url)
    assert result.exit_code == 0, result.output
    assert "epoch   1" in result.output and "val_accuracy" in result.output
    assert "cccccccc" in result.output and "succeeded" in result.output
    assert (tmp_path / "runs" / ("c" * 32) / "model.keras").is_file()


def test_search_runs_each_trial_once_then_skips_succeeded_hashes(
    cli_runner: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "grid.yaml",
        train={"epochs": 1, "batch_size": 64},
        search={"method": "grid", "parameters": {"optimizer.learning_rate": [0.003, 0.01]}},
    )
    first = invoke(cli_runner, ["run", "--config", str(config), "--json"], sqlite_url)
    assert first.exit_code == 0, first.output
    trials = json.loads(first.stdout)
    assert sorted(t["trial_index"] for t in trials) == [0, 1]
    with open_store(sqlite_url) as store:
        runs = store.list_runs(experiment="engine-test")
        assert sorted(r.trial_index for r in runs) == [0, 1]
    again = invoke(cli_runner, ["run", "--config", str(config), "--json"], sqlite_url)
    assert again.exit_code == 0 and json.loads(again.stdout) == []


def test_bad_data_dir_exits_3_and_leaves_no_running_row(
    cli_runner: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir"
    config = write_config(tmp_path / "folder.yaml", data={"source": "folder", "dir": "x"})
    result = invoke(
        cli_runner, ["run", "--config", str(config), "--data-dir", str(missing)], sqlite_url
    )
    assert result.exit_code == 3, result.output
    assert str(missing) in result.output and "Traceback" not in result.output
    with open_store(sqlite_url) as store:
        assert store.list_runs() == []


def test_corrupt_training_image_exits_3_naming_the_file(
    cli_runner: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    folder = make_image_folder(tmp_path / "images", per_class=10)
    broken = folder / "circle" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    config = write_config(tmp_path / "f.yaml", data={"source": "folder", "dir": str(folder)})
    result = invoke(cli_runner, ["run", "--config", str(config)], sqlite_url)
    assert result.exit_code == 3, result.output
    assert "broken.png" in result.output
    with open_store(sqlite_url) as store:
        assert store.list_runs() == []


def test_bad_config_or_run_id_exits_2(
    cli_runner: CliRunner, sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "bad.yaml", optimizer={"name": "rmsprop"})
    result = invoke(cli_runner, ["run", "--config", str(config)], sqlite_url)
    assert result.exit_code == 2 and "optimizer.name" in result.output
    good = write_config(tmp_path / "good.yaml")
    result = invoke(cli_runner, ["run", "--config", str(good), "--run-id", "my-run"], sqlite_url)
    assert result.exit_code == 2 and "32 lowercase hex" in result.output


def test_evaluate_reproduces_the_runs_test_accuracy(
    folder_run: dict, cli_runner: CliRunner
) -> None:
    payload = folder_run["payload"]
    args = ["evaluate", payload["model_path"], "--data-dir", str(folder_run["folder"]), "--json"]
    result = invoke(cli_runner, args, folder_run["url"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["split"] == "test" and scored["images"] == 20
    assert scored["accuracy"] == pytest.approx(payload["metrics"]["test_accuracy"])
    assert scored["loss"] == pytest.approx(payload["metrics"]["test_loss"], rel=1e-4)
    assert [c["name"] for c in scored["classes"]] == list(FOLDER_CLASSES)
    assert sum(c["support"] for c in scored["classes"]) == 20
    text = invoke(cli_runner, args[:-1], folder_run["url"])
    assert text.exit_code == 0 and "stripes" in text.output and "accuracy" in text.output


def test_evaluate_errors(folder_run: dict, cli_runner: CliRunner, tmp_path: Path) -> None:
    model = folder_run["payload"]["model_path"]
    missing = invoke(cli_runner, ["evaluate", model, "--data-dir", str(tmp_path / "x")], "")
    assert missing.exit_code == 3 and "no such data directory" in missing.output
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("not a zip")
    bad = invoke(cli_runner, ["evaluate", str(not_a_model), "--data-dir", str(tmp_path)], "")
    assert bad.exit_code == 6 and "cannot load the model" in bad.output


def _image_files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    files = {
        "photo.png": Image.fromarray(rgb),
        "photo.jpg": Image.fromarray(rgb).resize((300, 200)),
        "gray.png": Image.fromarray(rgb[..., 0], mode="L"),
        "cutout.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]]), mode="RGBA"),
    }
    for name, image in files.items():
        image.save(folder / name)
    return [folder / name for name in files]


def test_predict_any_image_file(folder_run: dict, cli_runner: CliRunner, tmp_path: Path) -> None:
    model = folder_run["payload"]["model_path"]
    files = _image_files(tmp_path)
    stripe = next((folder_run["folder"] / "stripes").glob("*.png"))
    result = invoke(cli_runner, ["predict", model, *map(str, files), str(stripe), "--json"], "")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["mode"] for r in rows] == ["RGB", "RGB", "L", "RGBA", "RGB"]
    assert (rows[1]["width"], rows[1]["height"]) == (300, 200)
    for row in rows:
        assert set(row["probabilities"]) == set(FOLDER_CLASSES)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["confidence"] == max(row["probabilities"].values())
    text = invoke(cli_runner, ["predict", model, str(files[2])], "")
    assert text.exit_code == 0 and "gray.png" in text.output and "L)" in text.output


def test_predict_errors(folder_run: dict, cli_runner: CliRunner, tmp_path: Path) -> None:
    model = folder_run["payload"]["model_path"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = invoke(cli_runner, ["predict", model, str(corrupt)], "")
    assert result.exit_code == 3 and "corrupt.jpg" in result.output
    missing = invoke(cli_runner, ["predict", str(tmp_path / "none.keras"), str(corrupt)], "")
    assert missing.exit_code == 6 and "no such model file" in missing.output


def _save_tiny_model(folder: Path, *, channels: int = 3, classes: int = 3) -> Path:
    """A 16 px classifier saved alone in `folder` (no classes.json, no config.json)."""
    import keras

    inputs = keras.Input((16, 16, channels))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(pooled))
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    return folder / "model.keras"


def test_predict_with_a_one_channel_model_is_a_model_error(
    cli_runner: CliRunner, tmp_path: Path
) -> None:
    model = _save_tiny_model(tmp_path / "gray", channels=1)
    image = _image_files(tmp_path)[0]
    for args in (["predict", str(model), str(image)], ["evaluate", str(model)]):
        result = invoke(cli_runner, args, "")
        assert result.exit_code == 6, result.output
        assert "1 channel" in result.output and "RGB" in result.output
        assert result.output.startswith(f"error: {model}:")


def test_evaluate_errors_name_what_is_actually_missing(
    cli_runner: CliRunner, tmp_path: Path
) -> None:
    model = _save_tiny_model(tmp_path / "bare")
    result = invoke(cli_runner, ["evaluate", str(model)], "")
    assert result.exit_code == 3, result.output
    assert "image folder" not in result.output
    assert "config.json" in result.output and "--data-dir" in result.output

    recorded = {
        "config": {"data": {"source": "synthetic", "synthetic_images": 40, "num_classes": 2}}
    }
    (model.parent / "config.json").write_text(json.dumps(recorded))
    result = invoke(cli_runner, ["evaluate", str(model)], "")
    assert result.exit_code == 3, result.output
    assert "None" not in result.output
    assert str(model.parent / "classes.json") not in result.output  # it does not exist
    assert "no classes.json beside the model" in result.output
    assert result.output.startswith("error: the synthetic data: classes")


@pytest.mark.slow
def test_ctrl_c_then_the_same_run_id_continues_in_a_new_process(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "long.yaml",
        data={"source": "synthetic", "synthetic_images": 1500, "num_classes": 4, "image_size": 16},
        train={"epochs": 8, "batch_size": 32},
    )
    exe = REPO / ".venv" / "bin" / "cifar-ops"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cifar_ops"]
    env = {**os.environ, "CIFAR_OPS_DATABASE_URL": sqlite_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run_id = "d" * 32
    args = [*command, "run", "--config", str(config), "--run-id", run_id]
    process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("epoch   2"):
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert f"resume with --run-id {run_id}" in rest
    with open_store(sqlite_url) as store:
        assert store.get_run(run_id).summary.status == "preempted"
        done = store.last_epoch(run_id)
    assert 2 <= done < 8

    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    epochs_shown = [int(line.split()[1]) for line in resumed.stderr.splitlines()
                    if line.startswith("epoch ")]  # fmt: skip
    assert epochs_shown == list(range(epochs_shown[0], 9)) and epochs_shown[0] in (done, done + 1)
    with open_store(sqlite_url) as store:
        assert [e.epoch for e in store.epochs(run_id)] == list(range(1, 9))
        assert store.get_run(run_id).summary.status == "succeeded"

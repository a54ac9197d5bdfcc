"""`cifar-ops score`: folders and bucket prefixes, batches into the warehouse (SQLite and the real
PostgreSQL) and CSV/Parquet files, resumed without duplicates; models:/ references everywhere."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.inference import load_saved_model
from cifar_ops.scoring import open_source, score_images
from cifar_ops.storage import objects
from cifar_ops.warehouse import open_store
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.schema import score_rows, scorings
from tests.s3_server import FAKE_SECRET, bucket, s3_endpoint  # noqa: F401
from tests.serving_support import image_folder, train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("scoring-model")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        patch.setenv("CIFAR_OPS_ARTIFACTS", str(base / "runs"))
        patch.setenv("CIFAR_OPS_DATA_CACHE", str(base / "cache"))
        yield train_tiny(base)


def cli(*args: str, url: str):
    return CliRunner().invoke(app, list(args), env={"CIFAR_OPS_DATABASE_URL": url})


def count_rows(url: str, scoring: str | None = None) -> int:
    with open_store(url) as store, store.engine.connect() as conn:
        query = select(func.count()).select_from(score_rows)
        if scoring is not None:
            query = query.where(score_rows.c.scoring_id == scoring)
        return int(conn.execute(query).scalar_one())


def test_score_a_folder_into_the_warehouse_and_files_then_rerun_adds_nothing(
    trained: dict, database_url: str, tmp_path: Path
) -> None:
    upgrade_database(database_url)
    folder = image_folder(tmp_path / "images", count=12)
    (folder / "b" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    args = ("score", trained["model"], "--data-dir", str(folder), "-o", str(out), "--json")
    args += ("--batch-size", "5")
    first = cli(*args, url=database_url)
    assert first.exit_code == 3, first.output  # the broken file is named, the rest written
    assert "1 image(s) under" in first.stderr and "b/broken.png" in first.stderr
    payload = json.loads(first.stdout)
    assert (payload["images"], payload["scored"], payload["already_scored"]) == (13, 12, 0)
    assert payload["images_per_second"] > 0
    scoring = payload["scoring_id"]
    assert count_rows(database_url, scoring) == 12

    frame = pd.read_parquet(out / "scores.parquet")
    assert list(frame.columns) == [
        "path", "predicted_class", "class_index", "confidence", "top_k", "width", "height", "mode"
    ]  # fmt: skip
    assert len(frame) == 12 and frame["path"].is_unique
    assert set(frame["mode"]) == {"RGB", "L", "RGBA", "P"}
    top = json.loads(frame["top_k"][0])
    assert len(top) == 3 and top[0][0] == frame["predicted_class"][0]
    assert top[0][1] >= top[1][1] >= top[2][1]
    assert pd.read_csv(out / "scores.csv")["path"].tolist() == frame["path"].tolist()

    again = cli(*args, url=database_url)
    assert json.loads(again.stdout)["already_scored"] == 12
    (folder / "b" / "broken.png").unlink()
    done = cli(*args, url=database_url)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["scoring_id"] == scoring
    assert count_rows(database_url) == 12
    with open_store(database_url) as store, store.engine.connect() as conn:
        header = conn.execute(select(scorings)).mappings().one()
        assert header["image_count"] == 12 and header["finished_at"] is not None
        view = (
            "reporting.batch_scores"
            if store.dialect == "postgresql"
            else ("reporting_batch_scores")
        )
        assert conn.execute(text(f"select count(*) from {view}")).scalar_one() == 12


def test_an_interrupted_scoring_resumes_where_it_stopped(
    trained: dict, sqlite_url: str, tmp_path: Path
) -> None:
    folder = image_folder(tmp_path / "images", count=10)
    saved = load_saved_model(trained["model"])
    source = open_source(str(folder))
    seen: list[int] = []

    def stop_after_two(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with open_store(sqlite_url) as store:
        with pytest.raises(KeyboardInterrupt):
            score_images(saved, source, store, model_ref="m", batch_size=3, on_batch=stop_after_two)
        assert count_rows(sqlite_url) == 6
        resumed = score_images(saved, source, store, model_ref="m", batch_size=3)
    assert (resumed.already_scored, resumed.scored) == (6, 4)
    assert count_rows(sqlite_url) == 10


def test_score_a_bucket_prefix_like_the_same_folder_on_disk(
    trained: dict,
    bucket: str,  # noqa: F811
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = image_folder(tmp_path / "images", count=7)
    prefix = f"s3://{bucket}/incoming/day1"
    for path in folder.rglob("*.*"):
        objects.upload(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", f"s3://{bucket}/artifacts")
    remote = cli("score", trained["model"], "--data-dir", prefix + "/", "--json", url=sqlite_url)
    assert remote.exit_code == 0, remote.output
    payload = json.loads(remote.stdout)
    assert payload["scored"] == 7
    assert payload["files"] == [
        f"s3://{bucket}/artifacts/scores/{payload['scoring_id']}/{name}"
        for name in ("scores.csv", "scores.parquet")
    ]
    assert objects.exists(payload["files"][1])
    local = cli("score", trained["model"], "--data-dir", str(folder), "--json", url=sqlite_url)
    with open_store(sqlite_url) as store, store.engine.connect() as conn:
        rows = conn.execute(
            select(score_rows.c.scoring_id, score_rows.c.path, score_rows.c.class_index)
        )
        by_scoring: dict[str, set] = {}
        for scoring, path, index in rows:
            by_scoring.setdefault(scoring, set()).add((path, index))
    assert by_scoring[payload["scoring_id"]] == by_scoring[json.loads(local.stdout)["scoring_id"]]
    assert FAKE_SECRET not in remote.output


def test_registered_references_work_for_score_predict_evaluate_and_pull(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    shutil.copy(Path(trained["url"].removeprefix("sqlite:///")), tmp_path / "copy.db")
    made = cli("models", "register", trained["run_id"], "--name", "tiny", "--alias", "champion",
               url=url)  # fmt: skip
    assert made.exit_code == 0, made.output
    folder = image_folder(tmp_path / "images", count=4)
    image = next(folder.rglob("*.png"))
    for reference in ("models:/tiny@champion", "models:/tiny/1"):
        scored = cli("score", reference, "--data-dir", str(folder), "--json", url=url)
        assert scored.exit_code == 0, scored.output
        predicted = cli("predict", reference, str(image), "--json", url=url)
        assert predicted.exit_code == 0, predicted.output
        pulled = cli("pull", reference, "-o", str(tmp_path / "pulled"), "--json", url=url)
        assert json.loads(pulled.stdout)["run_id"] == trained["run_id"]
    evaluated = cli("evaluate", "models:/tiny@champion", "--json", url=url)
    assert evaluated.exit_code == 0, evaluated.output
    with open_store(url) as store, store.engine.connect() as conn:
        names = conn.execute(select(scorings.c.registered_name, scorings.c.registered_version))
        assert set(names) == {("tiny", 1)}  # one scoring: the same model file, data and k
    missing = cli("predict", "models:/tiny@prod", str(image), url=url)
    assert missing.exit_code == 6 and "has no alias 'prod'" in missing.output
    malformed = cli("score", "models:/tiny", "--data-dir", str(folder), url=url)
    assert malformed.exit_code == 2 and "models:/NAME/VERSION" in malformed.output


def test_score_refuses_a_missing_or_empty_folder(trained: dict, sqlite_url: str, tmp_path: Path):
    missing = cli("score", trained["model"], "--data-dir", str(tmp_path / "nope"), url=sqlite_url)
    assert missing.exit_code == 3 and "no such data directory" in missing.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    empty = cli("score", trained["model"], "--data-dir", str(tmp_path / "empty"), url=sqlite_url)
    assert empty.exit_code == 3 and "no image files" in empty.output

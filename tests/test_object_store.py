"""Artifacts and data on a real S3 endpoint (moto's server on loopback, tests/s3_server.py).

A run publishes its checkpoints (parts, then a manifest) and models to the bucket; a fresh
process on an empty scratch dir resumes from it; a checkpoint without its manifest, or with an
altered part, is passed over for the one before; `pull`, `evaluate s3://...` and `predict RUN_ID`
use the published model; a folder in the bucket reads as the same folder on disk; and the fake
secret key never appears in any output, log, error or warehouse row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import uuid
from pathlib import Path

import pytest

from cifar_ops.checkpoints import RunDirectory
from cifar_ops.config import DataConfig
from cifar_ops.data import load_dataset
from cifar_ops.errors import StorageError
from cifar_ops.runner import execute
from cifar_ops.storage import objects
from cifar_ops.storage.published import MANIFEST_SUFFIX, Manifest
from tests.engine_helpers import tiny_config
from tests.faults.test_training_faults import epoch_seconds, faulting_run, wait_for
from tests.faults.warehouse_runs import EPOCHS, assert_complete, cifar_ops, warehouse_rows
from tests.faults.warehouse_runs import tiny_config as tiny_config_file
from tests.memory_sink import MemorySink
from tests.s3_server import FAKE_SECRET, bucket, s3_client, s3_endpoint  # noqa: F401
from tests.test_data_fixtures import make_cifar_archive, make_folder

PREFIX = "team/runs"


@pytest.fixture
def store(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """CIFAR_OPS_ARTIFACTS on the bucket, a scratch dir of this test's own."""
    url = f"s3://{bucket}/{PREFIX}"
    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", url)
    monkeypatch.setenv("CIFAR_OPS_SCRATCH_DIR", str(tmp_path / "scratch"))
    return url


def manifests(run_url: str) -> list[Manifest]:
    names = objects.list_names(f"{run_url}/checkpoint")
    found = [
        Manifest.from_json(objects.read_bytes(f"{run_url}/checkpoint/{name}") or b"")
        for name in names
        if name.endswith(MANIFEST_SUFFIX)
    ]
    return sorted(found, key=lambda m: m.order, reverse=True)


def fresh_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Another empty scratch dir, as on a pod scheduled on another node."""
    scratch = tmp_path / f"scratch-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CIFAR_OPS_SCRATCH_DIR", str(scratch))
    return scratch


def test_a_run_publishes_checkpoints_and_models_and_its_artifact_uri_is_the_object(
    store: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = MemorySink()
    outcome = execute(tiny_config(), sink=sink)
    run_url = f"{store}/{outcome.run_id}"
    assert outcome.status == "succeeded"
    assert outcome.finish.artifact_uri == f"{run_url}/model.keras"
    assert sink.finishes[outcome.run_id].artifact_uri == f"{run_url}/model.keras"
    for name in ("model.keras", "best.keras", "classes.json", "config.json"):
        assert objects.exists(f"{run_url}/{name}"), name
    published = manifests(run_url)
    assert len(published) == 2  # the newest and the one before; older ones are deleted
    assert published[0].order == (EPOCHS, True)
    assert {Path(rel).name for rel in published[0].parts} >= {"best.keras"}
    for manifest in published:
        for part in manifest.parts.values():
            data = objects.read_bytes(f"{run_url}/{part['object']}")
            assert data is not None
            assert hashlib.sha256(data).hexdigest() == part["sha256"]
    stems = {
        name.removesuffix(MANIFEST_SUFFIX) for name in objects.list_names(f"{run_url}/checkpoint")
    }
    assert stems == {m.stem for m in published}  # no parts of deleted checkpoints are left
    assert FAKE_SECRET not in caplog.text


def test_a_checkpoint_without_manifest_or_with_an_altered_part_is_passed_over(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = execute(tiny_config(train={"epochs": 2}), sink=MemorySink())
    run_url = f"{store}/{outcome.run_id}"
    newest, before = manifests(run_url)
    assert (newest.order, before.order) == ((2, True), (2, False))

    # parts of a newer checkpoint whose manifest never arrived (the pod died mid-upload)
    objects.upload_bytes(b"half", f"{run_url}/checkpoint/train-epoch-0009/x.weights.h5")
    fresh_scratch(tmp_path, monkeypatch)
    state = RunDirectory(outcome.run_id).load_state()
    assert state is not None and state.order == (2, True)

    objects.remove(f"{run_url}/checkpoint/{newest.stem}{MANIFEST_SUFFIX}")
    scratch = fresh_scratch(tmp_path, monkeypatch)
    run_dir = RunDirectory(outcome.run_id)
    state = run_dir.load_state()
    assert state is not None and state.order == (2, False)
    assert run_dir.root == scratch / outcome.run_id
    assert run_dir.weights_path(state).is_file() and (run_dir.root / "best.keras").is_file()

    weights = next(p for p in before.parts.values() if p["object"].endswith(".weights.h5"))
    objects.upload_bytes(b"altered", f"{run_url}/{weights['object']}")
    fresh_scratch(tmp_path, monkeypatch)
    with caplog.at_level(logging.WARNING):
        assert RunDirectory(outcome.run_id).load_state() is None
    assert "does not match its recorded sha256" in caplog.text


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_on_an_empty_scratch_dir_from_the_store(
    store: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops.warehouse import open_store

    with open_store(sqlite_url):
        pass  # migrated before two processes use it
    run_id = uuid.uuid4().hex
    config = tiny_config_file(tmp_path / "tiny.yaml")
    stderr = tmp_path / "stderr.txt"
    process = faulting_run(sqlite_url, run_id, config, "hold", stderr=stderr)
    wait_for(process, stderr, "fault: holding")  # inside epoch 2: epoch 1 is published
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=120) == -signal.SIGKILL
    run_url = f"{store}/{run_id}"
    assert [m.order for m in manifests(run_url)][:1] == [(1, False)]
    before = epoch_seconds(sqlite_url, run_id)

    fresh_scratch(tmp_path, monkeypatch)  # the retried pod lands on another node
    resumed = cifar_ops(sqlite_url, "run", "-c", str(config), "--run-id", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_complete(sqlite_url, run_id)
    rows = warehouse_rows(sqlite_url, run_id)
    assert rows["summary"].artifact_uri == f"{run_url}/model.keras"
    assert json.loads(resumed.stdout)["run_id"] == run_id
    assert epoch_seconds(sqlite_url, run_id)[1] == before[1]  # resumed after epoch 1, not redone
    for text in (resumed.stdout, resumed.stderr, stderr.read_text(errors="replace")):
        assert FAKE_SECRET not in text


def test_pull_evaluate_and_predict_use_the_published_model(
    store: str,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    cli_runner,  # noqa: ANN001
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cifar_ops.cli import app
    from cifar_ops.warehouse import open_store

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    with open_store(sqlite_url) as sink:
        outcome = execute(tiny_config(), sink=sink)
    run_id, model_url = outcome.run_id, f"{store}/{outcome.run_id}/model.keras"
    fresh_scratch(tmp_path, monkeypatch)

    pulled = cli_runner.invoke(app, ["pull", run_id[:10], "-o", str(tmp_path / "out"), "--json"])
    assert pulled.exit_code == 0, pulled.output
    names = sorted(Path(p).name for p in json.loads(pulled.stdout)["files"])
    assert names == ["best.keras", "classes.json", "config.json", "model.keras"]

    evaluated = cli_runner.invoke(app, ["evaluate", model_url, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert outcome.evaluation is not None
    assert json.loads(evaluated.stdout)["images"] == int(outcome.evaluation.confusion.sum())

    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (20, 12), (200, 30, 30)).save(image)
    predicted = cli_runner.invoke(app, ["predict", run_id, str(image), "--json"])
    assert predicted.exit_code == 0, predicted.output
    classes = json.loads(objects.read_bytes(f"{store}/{run_id}/classes.json") or b"[]")
    assert json.loads(predicted.stdout)[0]["predicted"] in classes

    missing = cli_runner.invoke(app, ["evaluate", f"{store}/nope/model.keras"])
    assert missing.exit_code == 6 and "no such model" in missing.output
    for result in (pulled, evaluated, predicted, missing):
        assert FAKE_SECRET not in result.output
    assert FAKE_SECRET not in caplog.text
    with open_store(sqlite_url) as warehouse:
        row = warehouse.get_run(run_id)
    assert FAKE_SECRET not in json.dumps(row.config) + str(row.summary)


def test_a_folder_in_the_bucket_reads_as_the_same_folder_on_disk_and_is_decoded_once(
    store: str,
    bucket: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    local = tmp_path / "pets"
    make_folder(local, {"cat": 5, "dog": 4}, split="train")
    make_folder(local, {"cat": 3, "dog": 3}, split="test")
    client = s3_client(s3_endpoint)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"images/pets/{path.relative_to(local).as_posix()}")
    url = f"s3://{bucket}/images/pets/"
    config = DataConfig(source="folder", dir=url, image_size=8)

    on_disk = load_dataset(DataConfig(source="folder", dir=str(local), image_size=8), seed=3)
    in_bucket = load_dataset(config, seed=3)
    assert in_bucket.fingerprint == on_disk.fingerprint
    assert in_bucket.class_names == ["cat", "dog"]
    assert in_bucket.test.refs and all(r.startswith(url + "test/") for r in in_bucket.test.refs)
    shared = objects.list_names(f"{store}/data-cache")
    assert len(shared) == 1 and shared[0].startswith("folder-")  # uploaded once for other pods

    # the node's decoded copy serves a second read: no mirror needed
    shutil.rmtree(tmp_path / "data-cache" / "objects")
    again = load_dataset(config, seed=3)
    assert again.fingerprint == on_disk.fingerprint and again.test.refs == in_bucket.test.refs
    assert not (tmp_path / "data-cache" / "objects").exists()

    # a pod on another node, with an empty cache, downloads the store's copy instead of decoding
    monkeypatch.setenv("CIFAR_OPS_DATA_CACHE", str(tmp_path / "other-node"))
    elsewhere = load_dataset(config, seed=3)
    assert elsewhere.fingerprint == on_disk.fingerprint
    assert not (tmp_path / "other-node" / "objects").exists()
    assert len(list((tmp_path / "other-node" / "decoded").glob("folder-*.npz"))) == 1

    # an image deleted from the bucket changes the content key: decoded again, one image fewer
    client.delete_object(Bucket=bucket, Key="images/pets/train/dog/000.jpg")
    fewer = load_dataset(config, seed=3)
    assert len(fewer.train) + len(fewer.validation) == (
        len(on_disk.train) + len(on_disk.validation) - 1
    )
    assert len(objects.list_names(f"{store}/data-cache")) == 2


def test_the_cifar_archive_comes_from_the_bucket(
    bucket: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cifar_ops.data import cifar10 as cifar10_source

    archive, md5 = make_cifar_archive(tmp_path / "made")
    s3_client(s3_endpoint).upload_file(str(archive), bucket, "mirror/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar10_source, "CIFAR10_MD5", md5)
    monkeypatch.setattr(cifar10_source, "CIFAR10_URL", "http://127.0.0.1:9/unreachable.tar.gz")
    data = DataConfig(source="cifar10", archive=f"s3://{bucket}/mirror/cifar-10-python.tar.gz")
    loaded = load_dataset(data, seed=0)
    assert len(loaded.test) == 20
    assert (tmp_path / "data-cache" / "cifar-10-python.tar.gz").is_file()


def test_a_store_failure_is_one_line_naming_the_object_and_no_secret(
    bucket: str,  # noqa: F811
) -> None:
    with pytest.raises(StorageError) as caught:
        objects.upload_bytes(b"x", "s3://no-such-bucket-cifar-ops/x")
    message = str(caught.value)
    assert "s3://no-such-bucket-cifar-ops/x: cannot upload" in message
    assert "\n" not in message and FAKE_SECRET not in message
    assert caught.value.exit_code == 8


def test_an_unknown_scheme_names_the_package_to_install() -> None:
    with pytest.raises(StorageError, match=r"install .*"):
        objects.read_bytes("nosuchscheme://bucket/x")


def test_credentials_in_a_location_are_refused_without_being_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops.config import load_config
    from cifar_ops.errors import ConfigError

    config = tiny_config_file(
        tmp_path / "c.yaml", data={"source": "folder", "dir": f"s3://AKIA:{FAKE_SECRET}@b/x"}
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, [])
    assert "data.dir" in str(caught.value) and FAKE_SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="data.archive"):
        load_config(
            config,
            [
                "data.source=cifar10",
                "data.dir=null",
                f"data.archive=s3://b/a.tar.gz?secret={FAKE_SECRET}",
            ],
        )

    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", f"s3://AKIA:{FAKE_SECRET}@bucket/runs")
    with pytest.raises(
        ConfigError, match="CIFAR_OPS_ARTIFACTS=s3://AKIA:\\*\\*\\*@bucket"
    ) as raised:
        RunDirectory(uuid.uuid4().hex)
    assert FAKE_SECRET not in str(raised.value)


def test_pull_copies_a_local_run_and_refuses_a_run_without_a_model(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    cli_runner,  # noqa: ANN001
) -> None:
    from cifar_ops.cli import app
    from cifar_ops.records import RunStart
    from cifar_ops.vocabulary import RunStatus
    from cifar_ops.warehouse import open_store

    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", sqlite_url)
    config = tiny_config(train={"epochs": 1})
    queued = RunStart(
        run_id=uuid.uuid4().hex,
        experiment=config.experiment,
        model_name=config.model.name,
        config=config.model_dump(mode="json"),
        config_hash=config.config_hash(),
        status=RunStatus.QUEUED,
    )
    with open_store(sqlite_url) as sink:
        outcome = execute(config, sink=sink)
        sink.register_queued([queued])
    pulled = cli_runner.invoke(app, ["pull", outcome.run_id, "-o", str(tmp_path / "out")])
    assert pulled.exit_code == 0, pulled.output
    assert (tmp_path / "out" / "model.keras").read_bytes() == Path(
        outcome.finish.artifact_uri or ""
    ).read_bytes()
    assert f"{outcome.run_id}: 4 files from " in pulled.stdout

    no_model = cli_runner.invoke(app, ["pull", queued.run_id])
    assert no_model.exit_code == 6
    assert f"run {queued.run_id} has no model (queued)" in no_model.output
    unknown = cli_runner.invoke(app, ["predict", "abcdef12", "x.png"])
    assert unknown.exit_code == 4 and "no run 'abcdef12'" in unknown.output
    not_a_model = cli_runner.invoke(app, ["evaluate", "not-a-model"])
    assert not_a_model.exit_code == 6 and "not a .keras file, an object URL" in not_a_model.output

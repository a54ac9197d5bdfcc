"""What a run records about itself, what a start the warehouse refuses leaves behind (nothing),
and the resume of a run recorded under an older config schema."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from sqlalchemy import text

from cifar_ops.checkpoints import RunDirectory
from cifar_ops.errors import ConfigError, WarehouseError
from cifar_ops.records import RunStart
from cifar_ops.runner import execute
from cifar_ops.vocabulary import ExecutorKind
from cifar_ops.warehouse.store import open_store
from tests.engine_helpers import tiny_config
from tests.monitoring_support import free_port, http_get, pushgateway
from tests.test_runner import RaiseAt

ONE_EPOCH = {"epochs": 1}
SHARED, BUSY, OLD = "a" * 32, "b" * 32, "c" * 32


def pushed_run_ids(gateway: str) -> set[str]:
    data = json.loads(http_get(f"{gateway}/api/v1/metrics"))["data"]
    return {group["labels"]["run_id"] for group in data}


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_executor_is_recorded_as_its_kind_and_an_unknown_one_writes_nothing(
    sqlite_url: str,
) -> None:
    store = open_store(sqlite_url)
    outcome = execute(tiny_config(train=ONE_EPOCH), sink=store, executor="kubernetes")
    summary = store.get_run(outcome.run_id).summary
    assert summary.executor == ExecutorKind.KUBERNETES
    with pytest.raises(ValueError, match="slurm"):
        execute(tiny_config(train=ONE_EPOCH), sink=store, run_id="slurm-run", executor="slurm")
    assert not Path("runs", "slurm-run").exists()
    assert [run.run_id for run in store.list_runs()] == [outcome.run_id]


def test_another_config_refused_by_the_warehouse_leaves_no_run_dir_and_pushes_nothing(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(sqlite_url)
    real = tiny_config(train=ONE_EPOCH)
    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", str(tmp_path / "machine-a"))
    with pytest.raises(KeyboardInterrupt):  # the real run, preempted on another machine
        execute(real, sink=store, run_id=SHARED, callbacks=[RaiseAt(1, KeyboardInterrupt())])
    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", str(tmp_path / "machine-b"))
    port = free_port()
    with pushgateway(tmp_path) as gateway:
        other = tiny_config(
            train=ONE_EPOCH,
            optimizer={"learning_rate": 0.01},
            monitoring={"port": port, "pushgateway": gateway},
        )
        with pytest.raises(ConfigError, match="already exists in the warehouse"):
            execute(other, sink=store, run_id=SHARED)
        assert pushed_run_ids(gateway) == set()
        assert port_is_free(port)
        assert not (tmp_path / "machine-b" / SHARED).exists()
        assert store.get_run(SHARED).summary.status == "preempted"
        # the real run, resumed on this machine, is not refused by a stray config.json, and a
        # run the warehouse takes pushes as before
        watched = tiny_config(train=ONE_EPOCH, monitoring={"pushgateway": gateway})
        assert watched.config_hash() == real.config_hash()
        assert execute(watched, sink=store, run_id=SHARED).status == "succeeded"
        assert pushed_run_ids(gateway) == {SHARED}


def test_a_start_while_another_process_holds_the_run_writes_and_pushes_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = tiny_config(train=ONE_EPOCH)
    live = open_store(sqlite_url)  # another process's store: its run lock is a file lock
    live.start_run(
        RunStart(
            run_id=BUSY,
            experiment=config.experiment,
            model_name=config.model.name,
            config=config.model_dump(mode="json"),
            config_hash=config.config_hash(),
        )
    )
    port = free_port()
    with pushgateway(tmp_path) as gateway:
        watched = tiny_config(train=ONE_EPOCH, monitoring={"port": port, "pushgateway": gateway})
        with pytest.raises(WarehouseError, match="already running in another process"):
            execute(watched, sink=open_store(sqlite_url), run_id=BUSY)
        assert pushed_run_ids(gateway) == set()  # no `failed` under the live run's id
    assert port_is_free(port)
    assert not Path("runs", BUSY).exists()
    assert live.get_run(BUSY).summary.status == "running"
    live.close()


def test_a_run_recorded_with_the_retired_checkpoint_key_resumes_under_its_hash(
    sqlite_url: str,
) -> None:
    config = tiny_config(train={"epochs": 2})
    store = open_store(sqlite_url)
    with pytest.raises(KeyboardInterrupt):
        execute(config, sink=store, run_id=OLD, callbacks=[RaiseAt(1, KeyboardInterrupt())])
    # the run as a version that still had `train.checkpoint` recorded it: another hash
    stored = config.model_dump(mode="json")
    stored["train"] = {"checkpoint": True, **stored["train"]}
    old_hash = "0" * 63 + "1"
    config_json = RunDirectory(OLD).config_path
    config_json.write_text(json.dumps({"config_hash": old_hash, "config": stored}))
    with store.transaction("backdating the run") as conn:
        conn.execute(
            text("UPDATE model_info SET config_hash = :h WHERE run_id = :r"),
            {"h": old_hash, "r": OLD},
        )

    assert RunDirectory(OLD).check(config) == old_hash
    outcome = execute(config, sink=store, run_id=OLD)
    assert outcome.status == "succeeded"
    assert [e.epoch for e in store.epochs(OLD)] == [1, 2]
    assert store.get_run(OLD).summary.config_hash == old_hash  # one run, one hash
    assert json.loads(config_json.read_text())["config_hash"] == old_hash

    # a real difference is still refused, with or without the retired key
    changed = tiny_config(train={"epochs": 2}, optimizer={"learning_rate": 0.01})
    with pytest.raises(ConfigError, match=f"started with config hash {old_hash}"):
        RunDirectory(OLD).check(changed)

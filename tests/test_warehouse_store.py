"""The store on real PostgreSQL and SQLite: lifecycle, idempotent retries, atomic evaluations."""

from __future__ import annotations

import fcntl
import math
import os
import time
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import func, select, text

from cifar_ops.errors import ConfigError, RunLocked, RunLockLost, WarehouseError
from cifar_ops.warehouse import Store, open_store, runlock, synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.schema import metadata

EVALUATION_TABLES = ("evaluations", "class_metrics", "confusion_matrix")
EVALUATION_TABLES += ("calibration_bins", "predictions_log")


@pytest.fixture
def store(database_url: str):
    upgrade_database(database_url)  # PostgreSQL needs it explicitly; SQLite would do it itself
    with open_store(database_url) as opened:
        yield opened


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
        }


def log_whole_run(store: Store, start, n: int = 300, epochs: int = 3) -> None:
    store.start_run(start)
    for number in range(1, epochs + 1):
        store.log_epoch(start.run_id, synthetic.epoch(number))
    store.log_evaluation(start.run_id, synthetic.evaluation(n, with_refs=True))
    store.finish_run(start.run_id, synthetic.finish())


def test_queued_run_is_started_finished_and_read_back(store: Store) -> None:
    start = synthetic.run_start("lifecycle", trial_index=2, job_name="cifar-ops-abc-2")
    store.register_queued([start])
    [queued] = store.list_runs()
    assert (queued.status, queued.job_name, queued.trial_index) == ("queued", "cifar-ops-abc-2", 2)

    log_whole_run(store, start, n=500)
    detail = store.get_run(start.run_id[:7].upper())
    run = detail.summary
    assert run.run_id == start.run_id and run.status == "succeeded"
    assert run.epochs_logged == 3 and run.best_epoch == 3 and run.test_accuracy == 0.7
    assert run.duration_seconds is not None and run.duration_seconds >= 0
    assert detail.config == start.config
    assert (
        [e.epoch for e in detail.epochs]
        == [1, 2, 3]
        == [e.epoch for e in store.epochs(start.run_id)]
    )
    [evaluation] = detail.evaluations
    expected = synthetic.evaluation(500)
    assert evaluation.prediction_count == 500
    assert evaluation.class_names == synthetic.CIFAR10_CLASSES
    assert np.array_equal(np.array(evaluation.confusion), expected.confusion)
    assert evaluation.class_metrics[3].f1 == pytest.approx(expected.class_metrics[3].f1)
    assert [b.count for b in evaluation.calibration] == [b.count for b in expected.calibration]
    wrong = store.predictions(start.run_id, only_wrong=True)
    assert len(wrong) == 500 - int(np.trace(expected.confusion))
    assert [w.confidence for w in wrong] == sorted((w.confidence for w in wrong), reverse=True)
    assert store.last_epoch(start.run_id) == 3
    assert store.succeeded_hashes("lifecycle") == {start.config_hash}


def test_filters_best_run_and_compare(store: Store) -> None:
    a = synthetic.run_start("exp-a", model_name="vgg10")
    b = synthetic.run_start("exp-a", model_name="resnet20")
    c = synthetic.run_start("exp-b", model_name="vgg10")
    for start, accuracy in ((a, 0.6), (b, 0.8), (c, 0.9)):
        store.start_run(start)
        store.finish_run(start.run_id, synthetic.finish(test_accuracy=accuracy))
    store.set_status(c.run_id, "failed", "OOMKilled")
    assert {r.run_id for r in store.list_runs(experiment="exp-a")} == {a.run_id, b.run_id}
    assert [r.run_id for r in store.list_runs(model="vgg10", status="failed")] == [c.run_id]
    assert store.get_run(c.run_id).summary.status_reason == "OOMKilled"
    assert store.best_run("exp-a").run_id == b.run_id  # type: ignore[union-attr]
    assert store.best_run("exp-b") is None  # its only run failed
    assert [r.run_id for r in store.compare([b.run_id[:10], a.run_id])] == [b.run_id, a.run_id]
    assert len(store.list_runs(limit=2)) == 2


def test_unknown_ambiguous_and_malformed_run_ids_are_errors(store: Store) -> None:
    with pytest.raises(WarehouseError, match="no run 'abc'"):
        store.get_run("abc")
    with pytest.raises(WarehouseError, match="not a run id"):
        store.get_run("x' OR '1'='1")
    store.start_run(synthetic.run_start(run_id="ab" + "0" * 30))
    store.start_run(synthetic.run_start(run_id="ab" + "1" * 30))
    with pytest.raises(WarehouseError, match="matches 2 runs"):
        store.compare(["ab"])
    with pytest.raises(WarehouseError, match="no run"):
        store.finish_run("f" * 32, synthetic.finish())
    with pytest.raises(WarehouseError, match="not registered"):
        store.log_epoch("f" * 32, synthetic.epoch(1))
    with pytest.raises(WarehouseError, match="not one of"):
        store.set_status("ab" + "0" * 30, "exploded")


def test_a_retried_run_writes_no_duplicate_rows(store: Store) -> None:
    start = synthetic.run_start("retry")
    store.register_queued([start])
    log_whole_run(store, start)
    once = counts(store)
    store.register_queued([start])  # a re-submit does not reset a known run
    assert store.get_run(start.run_id).summary.status == "succeeded"
    log_whole_run(store, start)  # the pod ran again from the start, and re-sent everything
    assert counts(store) == once
    assert once["model_info"] == 1 and once["epoch_stats"] == 3
    assert once["predictions_log"] == 300 and once["confusion_matrix"] == 100
    # a re-sent epoch with new numbers replaces the old ones
    store.log_epoch(start.run_id, replace(synthetic.epoch(2), accuracy=0.99))
    assert store.epochs(start.run_id)[1].accuracy == 0.99
    assert counts(store) == once


def test_a_failed_evaluation_write_leaves_nothing_of_it(store: Store) -> None:
    start = synthetic.run_start("atomic")
    store.start_run(start)
    bad = synthetic.evaluation(400)
    assert bad.predictions is not None
    bad.predictions.confidence[-1] = 1.5  # the very last bulk row breaks a check constraint
    with pytest.raises(WarehouseError, match="refused logging the test evaluation"):
        store.log_evaluation(start.run_id, bad)
    after = counts(store)
    assert all(after[name] == 0 for name in EVALUATION_TABLES), after

    # a good evaluation survives a failed re-write whole
    store.log_evaluation(start.run_id, synthetic.evaluation(400))
    good = counts(store)
    with pytest.raises(WarehouseError):
        store.log_evaluation(start.run_id, bad)
    assert counts(store) == good
    assert store.get_run(start.run_id).evaluations[0].prediction_count == 400


def test_names_with_quotes_and_sql_are_stored_verbatim(store: Store) -> None:
    nasty = "o'brien\"; DROP TABLE model_info; --"
    names = [
        nasty,
        'comma, "quoted"',
        "new\nline",
        "\\N",
        "",
        "tab\there",
        "ünïcode ✓",
        "x",
        "y",
        "z",
    ]
    start = synthetic.run_start(nasty, job_name="job'); DELETE FROM experiments; --")
    store.start_run(start)
    evaluation = synthetic.evaluation(50, class_names=names, with_refs=True)
    assert evaluation.predictions is not None
    evaluation.predictions.image_ref = [f'dir/it\'s "{i}",\\N.png' for i in range(50)]
    evaluation.predictions.image_ref[0] = "\\N"
    evaluation.predictions.image_ref[1] = ""
    store.log_evaluation(start.run_id, evaluation)
    detail = store.get_run(start.run_id)
    assert detail.summary.experiment == nasty
    assert detail.summary.job_name == "job'); DELETE FROM experiments; --"
    assert [m.class_name for m in detail.evaluations[0].class_metrics] == names
    assert detail.evaluations[0].class_names == names
    refs = [p.image_ref for p in store.predictions(start.run_id)]
    assert refs == evaluation.predictions.image_ref
    assert store.experiments()[0].name == nasty


def test_nan_loss_is_stored_explicitly(store: Store) -> None:
    start = synthetic.run_start("nan")
    store.start_run(start)
    store.log_epoch(start.run_id, replace(synthetic.epoch(1), loss=float("nan")))
    loss = store.epochs(start.run_id)[0].loss
    if store.dialect == "postgresql":
        assert math.isnan(loss)
    else:
        assert loss is None  # SQLite has no NaN: it stores NULL


def test_reporting_views_agree_with_the_tables(store: Store) -> None:
    search = [synthetic.run_start("grid", trial_index=i) for i in range(3)]
    store.register_search(
        "grid", method="grid", parameters={"optimizer.learning_rate": [1, 2, 3]}, trial_count=3
    )
    for i, start in enumerate(search):
        log_whole_run(store, start, n=200)
        store.finish_run(start.run_id, replace(synthetic.finish(), val_accuracy=0.5 + i / 10))
    rows = {
        name: store.read_view(name)
        for name in ("confusion", "misclassifications", "search_leaderboard")
    }
    columns, confusion = rows["confusion"]
    share = columns.index("row_share")
    totals: dict[tuple[str, int], float] = {}
    for row in confusion:
        key = (row[columns.index("run_id")], row[columns.index("true_class")])
        totals[key] = totals.get(key, 0.0) + row[share]
    assert all(t == pytest.approx(1.0) for t in totals.values()) and len(totals) == 30
    wrong = 200 - int(np.trace(synthetic.evaluation(200).confusion))
    assert len(rows["misclassifications"][1]) == 3 * wrong
    columns, board = rows["search_leaderboard"]
    ranked = sorted(board, key=lambda r: r[columns.index("rank")])
    assert [r[columns.index("run_id")] for r in ranked] == [s.run_id for s in reversed(search)]
    assert ranked[0][columns.index("search_method")] == "grid"
    assert store.experiments()[0].trial_count == 3


def test_a_run_is_locked_from_start_to_finish(database_url: str) -> None:
    upgrade_database(database_url)
    start = synthetic.run_start("locked")
    with open_store(database_url) as first, open_store(database_url) as second:
        first.start_run(start)
        with pytest.raises(WarehouseError, match="already running in another process"):
            second.start_run(start)
        first.finish_run(start.run_id, synthetic.finish())
        second.start_run(start)  # finished here: the same config resumes there
        assert second.get_run(start.run_id).summary.status == "running"
    with open_store(database_url) as third:  # closing the store released its run
        third.start_run(start)
        third.finish_run(start.run_id, synthetic.finish())


def test_sqlite_run_lock_files_go_with_their_runs(sqlite_url: str, tmp_path) -> None:
    """A warehouse that ran many runs keeps no lock file per run; a released lock file that a
    racing acquirer had already opened is not a lock: the path's file is."""
    upgrade_database(sqlite_url)
    start = synthetic.run_start("tidy")
    with open_store(sqlite_url) as store:
        path = runlock.lock_path(store.engine, start.run_id)
        store.start_run(start)
        assert path is not None and path.exists()
        store.finish_run(start.run_id, synthetic.finish())
        assert not path.exists() and list(path.parent.iterdir()) == []

    stale = tmp_path / "stale.lock"
    first = runlock._FileLock.try_acquire(stale)
    racer = os.open(stale, os.O_RDWR)  # opened before the release unlinks the file
    first.release()
    fcntl.flock(racer, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it can flock the unlinked file...
    second = runlock._FileLock.try_acquire(stale)  # ...which does not stop the holder of the path's
    assert second is not None and stale.exists()
    assert runlock._FileLock.try_acquire(stale) is None
    second.release()
    os.close(racer)


def test_a_lock_taken_on_a_file_its_releaser_just_unlinked_is_taken_again_on_the_new_one(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The releaser unlinks the file between the acquirer's open and its flock: the flock then
    holds nothing anyone else can see, so the acquirer must notice and lock the path's new file."""
    path = tmp_path / "raced.lock"
    real_open, opened = os.open, []

    def open_then_lose_the_race(name, flags, mode=0o777):
        fd = real_open(name, flags, mode)
        opened.append(fd)
        if len(opened) == 1:
            os.unlink(name)  # the releaser's unlink lands right after this open
        return fd

    monkeypatch.setattr(runlock.os, "open", open_then_lose_the_race)
    held = runlock._FileLock.try_acquire(path)
    monkeypatch.undo()
    assert held is not None and len(opened) == 2  # the unlinked file was dropped, then retried
    assert path.exists() and runlock._FileLock.try_acquire(path) is None  # the path's file
    held.release()
    assert not path.exists()


def test_a_refused_run_lock_is_its_own_error(database_url: str) -> None:
    upgrade_database(database_url)
    start = synthetic.run_start("refused")
    with open_store(database_url) as first, open_store(database_url) as second:
        first.start_run(start)
        with pytest.raises(RunLocked, match="already running in another process") as refused:
            second.start_run(start)
        assert isinstance(refused.value, WarehouseError) and refused.value.exit_code == 4


def test_the_run_lock_session_frees_its_lock_within_a_minute_of_a_dead_client(
    postgres_url: str,
) -> None:
    """The server's TCP keepalives on the lock's own session, and libpq's on the client side."""
    upgrade_database(postgres_url)
    start = synthetic.run_start("keepalive")
    with open_store(postgres_url) as store:
        store.start_run(start)
        connection = store._locks[start.run_id]._connection  # the lock's own session
        shown = {
            name: connection.execute(text(f"SHOW {name}")).scalar_one()
            for name in (
                "tcp_keepalives_idle",
                "tcp_keepalives_interval",
                "tcp_keepalives_count",
                "tcp_user_timeout",
            )
        }
        assert shown == {
            "tcp_keepalives_idle": "30",
            "tcp_keepalives_interval": "10",
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": "60000",
        }
        dsn = connection.connection.dbapi_connection.get_dsn_parameters()
        assert (dsn["keepalives"], dsn["keepalives_idle"]) == ("1", "30")
        assert (dsn["keepalives_interval"], dsn["keepalives_count"]) == ("10", "3")
        store.finish_run(start.run_id, synthetic.finish())


def test_a_run_id_with_another_config_hash_is_refused_and_left_unlocked(database_url: str) -> None:
    upgrade_database(database_url)
    start = synthetic.run_start("original")
    with open_store(database_url) as store:
        store.start_run(start)
        store.log_epoch(start.run_id, synthetic.epoch(1))
        store.finish_run(start.run_id, synthetic.finish())
        other = replace(start, experiment="another", config_hash="f" * 64)
        with pytest.raises(ConfigError, match="already exists in the warehouse") as refused:
            store.start_run(other)
        assert start.config_hash in str(refused.value) and "f" * 64 in str(refused.value)
        assert "'original'" in str(refused.value) and "'another'" in str(refused.value)
        summary = store.get_run(start.run_id).summary
        assert (summary.experiment, summary.config_hash) == ("original", start.config_hash)
        assert summary.status == "succeeded" and summary.epochs_logged == 1
        with open_store(database_url) as elsewhere:  # the refusal kept no lock
            elsewhere.start_run(start)


def _kill_lock_session(store: Store, run_id: str, postgres_url: str) -> None:
    """End the run lock's backend from outside, as a server restart would, and wait until it is
    gone (its advisory lock with it)."""
    pid = store._locks[run_id]._connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with open_store(postgres_url) as other, other.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        deadline = time.monotonic() + 60  # a loaded CI machine can take seconds to reap it
        while time.monotonic() < deadline:
            alive = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ).scalar_one()
            # pg_stat_activity is a snapshot taken once per transaction: end it, or a backend
            # seen alive once (a slow machine) is seen alive until the deadline
            conn.rollback()
            if not alive:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} did not end")


def _lock_holders(store: Store, run_id: str) -> list[int]:
    key = runlock.lock_key(run_id) & (2**64 - 1)
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                    " AND objsubid = 1 AND classid = CAST(:h AS oid) AND objid = CAST(:l AS oid)"
                ),
                {"h": key >> 32, "l": key & (2**32 - 1)},
            ).scalars()
        )


def test_a_run_whose_lock_session_was_killed_takes_its_lock_again_before_writing(
    postgres_url: str,
) -> None:
    upgrade_database(postgres_url)
    start = synthetic.run_start("relocked")
    with open_store(postgres_url) as store:
        store.start_run(start)
        store.log_epoch(start.run_id, synthetic.epoch(1))
        _kill_lock_session(store, start.run_id, postgres_url)
        assert _lock_holders(store, start.run_id) == []
        store.log_epoch(start.run_id, synthetic.epoch(2))
        connection = store._locks[start.run_id]._connection
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert _lock_holders(store, start.run_id) == [pid]
        with open_store(postgres_url) as second, pytest.raises(RunLocked):
            second.start_run(start)
        store.finish_run(start.run_id, synthetic.finish())
        assert store.get_run(start.run_id).summary.epochs_logged == 2


def test_a_run_whose_lost_lock_another_session_took_stops_without_writing(
    postgres_url: str,
) -> None:
    upgrade_database(postgres_url)
    start = synthetic.run_start("stolen")
    with open_store(postgres_url) as store:
        store.start_run(start)
        store.log_epoch(start.run_id, synthetic.epoch(1))
        _kill_lock_session(store, start.run_id, postgres_url)
        with open_store(postgres_url) as thief, thief.engine.connect() as taken:
            key = runlock.lock_key(start.run_id)
            assert taken.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
            with pytest.raises(RunLockLost, match="another process holds it now") as lost:
                store.log_epoch(start.run_id, synthetic.epoch(2))
            assert isinstance(lost.value, RunLocked) and lost.value.exit_code == 4
            with pytest.raises(RunLockLost):
                store.log_evaluation(start.run_id, synthetic.evaluation(10))
            with pytest.raises(RunLockLost):
                store.finish_run(start.run_id, synthetic.finish())
            summary = store.get_run(start.run_id).summary
            assert (summary.status, summary.epochs_logged) == ("running", 1)
            assert counts(store)["evaluations"] == 0

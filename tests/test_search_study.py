"""Searches run through an Optuna study in the warehouse: samplers, pruners, workers, faults.

Real engine on tiny synthetic data, real SQLite files and a real PostgreSQL server; the faults
are real (a worker process SIGKILLed mid-trial, a Ctrl-C between epochs).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import keras
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.config import SearchConfig, load_config
from cifar_ops.executors.local import run_locally
from cifar_ops.search import space, storage, strategy_for, worker
from cifar_ops.search.expand import build_trial
from cifar_ops.search.methods import TrialResult
from cifar_ops.search.storage import open_storage
from cifar_ops.vocabulary import RunStatus, SearchMethod
from cifar_ops.warehouse.store import open_store
from tests.engine_helpers import TINY

SPACE = {
    "optimizer.learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "optimizer.weight_decay": {"uniform": [0.0, 1e-3]},
    "model.dense_units": {"int_uniform": [8, 32]},
    "model.filters": [[8, 16], [16, 16]],
}


def write_search(tmp_path: Path, name: str, search: dict[str, Any], **run: Any) -> Path:
    """A search YAML over TINY (one epoch by default): the experiment is the file's name."""
    raw = json.loads(json.dumps(TINY))
    raw["experiment"] = name
    raw["train"] = {**raw["train"], "epochs": 1}
    raw.update(run)
    raw["search"] = search
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def load(path: Path) -> SearchConfig:
    loaded = load_config(path)
    assert isinstance(loaded, SearchConfig)
    return loaded


def optuna_trials(url: str, experiment: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=experiment, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


@pytest.mark.parametrize("method", list(SearchMethod))
def test_each_sampler_proposes_valid_configs(tmp_path: Path, method: SearchMethod) -> None:
    grid = {"optimizer.learning_rate": [0.001, 0.01], "model.filters": [[8, 16], [16, 16]]}
    spec = {"method": str(method), "parameters": grid if method == "grid" else SPACE, "seed": 3}
    if method != "grid":
        spec["trials"] = 8
    search = load(write_search(tmp_path, f"valid-{method}", spec))
    strategy = strategy_for(search.search)
    points = []
    while (point := strategy.ask()) is not None:
        trial = build_trial(search.base, len(points), point, None)  # validated as a run config
        config = trial.config
        if method == "grid":
            assert point in [
                {**dict(zip(grid, v, strict=True))}
                for v in (
                    [a, b] for a in grid["optimizer.learning_rate"] for b in grid["model.filters"]
                )
            ]
        else:
            assert 1e-4 <= config.optimizer.learning_rate <= 1e-1
            assert 0.0 <= config.optimizer.weight_decay <= 1e-3
            assert 8 <= config.model.dense_units <= 32 and isinstance(
                point["model.dense_units"], int
            )
            assert (
                point["model.filters"] in SPACE["model.filters"]
            )  # a list choice comes back a list
        strategy.tell(TrialResult(len(points), RunStatus.SUCCEEDED, {"val_accuracy": 0.5}))
        points.append(point)
    assert len(points) == strategy.planned() == (4 if method == "grid" else 8)
    if method in ("tpe", "cmaes"):  # sampled, not a fixed list
        assert strategy.adaptive and search.trials == []
        assert len({json.dumps(p, sort_keys=True) for p in points}) > 1


def test_the_spaces_map_to_optuna_distributions(tmp_path: Path) -> None:
    search = load(
        write_search(tmp_path, "dists", {"method": "tpe", "trials": 2, "parameters": SPACE})
    )
    found = space.distributions(search.search)
    assert found["optimizer.learning_rate"] == optuna.distributions.FloatDistribution(
        1e-4, 1e-1, log=True
    )
    assert found["optimizer.weight_decay"] == optuna.distributions.FloatDistribution(0.0, 1e-3)
    assert found["model.dense_units"] == optuna.distributions.IntDistribution(8, 32)
    choices = found["model.filters"].choices
    assert space.point_of({"model.filters": choices[1]}) == {"model.filters": [16, 16]}


def test_a_median_pruner_stops_a_clearly_worse_trial_and_the_run_lands_pruned(
    tmp_path: Path, sqlite_url: str, cli_runner: CliRunner
) -> None:
    # trial 0 learns; trial 1's rate is a millionth of it, so its first epoch is far below
    search = {
        "method": "grid",
        "parameters": {"optimizer.learning_rate": [0.01, 1e-8]},
        "pruner": "median",
        "pruning": {"warmup_trials": 1, "min_epochs": 1},
    }
    path = write_search(tmp_path, "pruned", search, train={"epochs": 3, "batch_size": 32})
    outcomes = run_locally(load(path), database_url=sqlite_url)
    assert [o.status for o in outcomes] == [RunStatus.SUCCEEDED, RunStatus.PRUNED]
    pruned = outcomes[1]
    assert pruned.finish.pruned_epoch == 1 and pruned.model_path is None
    with open_store(sqlite_url) as store:
        assert [e.epoch for e in store.epochs(pruned.run_id)] == [1]  # stopped at that epoch
        assert len(store.epochs(outcomes[0].run_id)) == 3
        columns, rows = store.read_view("search_leaderboard")
    board = {row[columns.index("run_id")]: dict(zip(columns, row, strict=True)) for row in rows}
    assert board[pruned.run_id]["status"] == "pruned"
    assert board[pruned.run_id]["pruned_epoch"] == 1 and board[pruned.run_id]["epochs_used"] == 1
    assert board[outcomes[0].run_id]["epochs_used"] == 3 and board[outcomes[0].run_id]["rank"] == 1
    assert board[pruned.run_id]["search_pruner"] == "median"
    assert board[pruned.run_id]["trial_number"] == 1
    states = [t.state for t in optuna_trials(sqlite_url, "pruned")]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED]
    listed = cli_runner.invoke(
        app,
        ["runs", "list", "--status", "pruned", "--json"],
        env={"CIFAR_OPS_DATABASE_URL": sqlite_url},
    )
    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in json.loads(listed.output)] == [pruned.run_id]


def test_two_workers_share_one_postgres_study_and_run_exactly_its_trials(
    tmp_path: Path, postgres_url: str, cli_runner: CliRunner
) -> None:
    upgraded = cli_runner.invoke(
        app, ["db", "upgrade"], env={"CIFAR_OPS_DATABASE_URL": postgres_url}
    )
    assert upgraded.exit_code == 0, upgraded.output
    assert "optuna" in upgraded.output  # the study tables, in their own schema
    spec = {"method": "tpe", "trials": 4, "parameters": SPACE, "seed": 1, "heartbeat_seconds": 2}
    search = load(write_search(tmp_path, "two-workers", spec))
    outcomes = run_locally(search, parallel=2, database_url=postgres_url)
    assert sorted(o.trial_index for o in outcomes) == [0, 1, 2, 3]
    assert len({o.run_id for o in outcomes}) == 4
    assert {o.status for o in outcomes} == {RunStatus.SUCCEEDED}
    trials = optuna_trials(postgres_url, "two-workers")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # no trial twice
    workers = {t.user_attrs["worker"] for t in trials}  # asked by the workers themselves
    assert all(w.startswith("local-") for w in workers)
    with open_store(postgres_url) as store:
        runs = store.list_runs(experiment="two-workers")
    assert sorted(r.trial_number for r in runs) == [0, 1, 2, 3]


class KillAtFirstEpoch(keras.callbacks.Callback):
    """SIGKILL this process once the first epoch is in the warehouse and checkpointed."""

    def on_epoch_record(self, record: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def _killed_worker(path: Path, url: str) -> None:
    search = load(path)
    with open_store(url) as store:
        worker.work(search, url, store, executor="local", callbacks=[KillAtFirstEpoch()])


def test_a_worker_killed_mid_trial_is_failed_by_heartbeat_and_its_trial_runs_again(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = {
        "method": "tpe",
        "trials": 1,
        "parameters": SPACE,
        "heartbeat_seconds": 1,
        "grace_seconds": 2,
    }
    path = write_search(tmp_path, "killed", spec, train={"epochs": 2, "batch_size": 32})
    search = load(path)
    with open_store(sqlite_url) as store:
        worker.prepare(search, sqlite_url, store)
    process = multiprocessing.get_context("spawn").Process(
        target=_killed_worker, args=(path, sqlite_url)
    )
    process.start()
    process.join(timeout=240)
    assert process.exitcode == -signal.SIGKILL
    [running] = optuna_trials(sqlite_url, "killed")
    assert running.state == TrialState.RUNNING  # nobody told the study
    run_id = running.user_attrs["run_id"]
    with open_store(sqlite_url) as store:
        assert store.get_run(run_id).summary.status == "running"
        outcomes = worker.work(search, sqlite_url, store, executor="local")
        assert [e.epoch for e in store.epochs(run_id)] == [1, 2]
    # the heartbeat went stale: failed, queued again with its run id, resumed from its checkpoint
    assert [(o.run_id, o.status) for o in outcomes] == [(run_id, RunStatus.SUCCEEDED)]
    failed, rerun = optuna_trials(sqlite_url, "killed")
    assert (failed.state, rerun.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert rerun.system_attrs["failed_trial"] == failed.number == 0
    assert rerun.user_attrs["run_id"] == run_id and rerun.params == failed.params


class InterruptSecondTrial(keras.callbacks.Callback):
    """Ctrl-C after the first epoch of the second trial (the third epoch record)."""

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def on_epoch_record(self, record: Any) -> None:
        self.records += 1
        if self.records == 3:
            raise KeyboardInterrupt


def test_an_interrupted_search_run_again_runs_only_what_is_missing(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = {"method": "tpe", "trials": 3, "parameters": SPACE, "seed": 5}
    path = write_search(tmp_path, "resumed", spec, train={"epochs": 2, "batch_size": 32})
    with pytest.raises(KeyboardInterrupt):
        run_locally(load(path), database_url=sqlite_url, callbacks=[InterruptSecondTrial()])
    with open_store(sqlite_url) as store:
        first = {r.trial_index: r for r in store.list_runs(experiment="resumed")}
    assert {i: r.status for i, r in first.items()} == {0: "succeeded", 1: "preempted"}
    outcomes = run_locally(load(path), database_url=sqlite_url)
    assert [o.trial_index for o in outcomes] == [1, 2]  # trial 0 is not run again
    assert outcomes[0].run_id == first[1].run_id  # the interrupted run, resumed
    with open_store(sqlite_url) as store:
        runs = store.list_runs(experiment="resumed")
        assert [e.epoch for e in store.epochs(first[1].run_id)] == [1, 2]
    assert sorted((r.trial_index, r.status) for r in runs) == [
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "succeeded"),
    ]
    states = [t.state for t in optuna_trials(sqlite_url, "resumed")]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1


def test_the_report_of_a_pruned_search_shows_curves_epochs_and_importances(
    sqlite_url: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from cifar_ops.records import RunFinish
    from cifar_ops.report.loader import load_report_data
    from cifar_ops.report.render import render_html
    from cifar_ops.warehouse import synthetic as fake
    from cifar_ops.warehouse.engine import create_warehouse_engine

    points = [{"optimizer.learning_rate": lr, "model.dense_units": u} for lr in (0.1, 0.01)
              for u in (8, 16)]  # fmt: skip
    with open_store(sqlite_url) as store:
        store.register_search("pruned-report", method="grid", parameters={}, trial_count=4,
                              sampler="enqueued grid", pruner="asha")  # fmt: skip
        for index, point in enumerate(points):
            start = fake.run_start("pruned-report", trial_index=index, trial_params=point)
            store.start_run(replace(start, trial_number=index))
            pruned = index == 3
            epochs = [1] if pruned else [1, 2, 3]
            store.log_epochs(
                start.run_id, [fake.epoch(n, accuracy=0.4 + index / 10) for n in epochs]
            )
            val = 0.5 + point["optimizer.learning_rate"] + point["model.dense_units"] / 100
            status = RunStatus.PRUNED if pruned else RunStatus.SUCCEEDED
            finish = RunFinish(status=status, val_accuracy=val, pruned_epoch=1 if pruned else None)
            store.finish_run(start.run_id, finish)
    engine = create_warehouse_engine(sqlite_url)
    try:
        data = load_report_data(engine, experiment="pruned-report")
    finally:
        engine.dispose()
    search = data.search
    assert search is not None
    assert (search.epochs_spent, search.epochs_full) == (10, 12)  # 3 x 3 + 1, against 4 x 3
    assert set(search.curves["run_id"]) == {r for r in search.leaderboard["run_id"]}
    assert set(search.importances) == {"optimizer.learning_rate", "model.dense_units"}
    assert math.isclose(sum(search.importances.values()), 1.0)
    page = render_html(data)
    for plot in ("trial-curves", "epochs-against-grid", "importances"):
        assert f'data-plot="{plot}"' in page
    assert "10 epochs, 83.33% of the 12" in page


def test_a_pruned_grid_keeps_its_trial_list_and_a_retried_pod_gets_its_own_trial_back(
    tmp_path: Path, sqlite_url: str
) -> None:
    grid = {"optimizer.learning_rate": [0.01, 0.1], "model.dense_units": [8, 16]}
    search = load(write_search(tmp_path, "grid-asha", {"parameters": grid, "pruner": "asha"}))
    with open_store(sqlite_url) as store:
        worker.prepare(search, sqlite_url, store)
    study = worker.SearchStudy(search, sqlite_url)
    try:
        assert study.prepare() == 0  # already enqueued: a search run again adds nothing
        # queued in the search seed's shuffled order, each the listed trial itself (same index,
        # same hash): an asynchronous pruner should not meet the grid sorted by one parameter
        order = [index for index, _ in study._enqueue_order()]
        assert sorted(order) == [t.index for t in search.trials]
        first = study.ask("job-a/0")
        assert first is not None and first.trial is search.trials[order[0]]
        again = study.ask("job-a/0")  # the same completion index, retried: its own trial back
        assert again is not None and (again.number, again.run_id) == (first.number, first.run_id)
        others = [study.ask(f"job-a/{i}") for i in (1, 2, 3)]
        assert [o.trial for o in others if o] == [search.trials[i] for i in order[1:]]
        assert study.ask("job-a/4") is None  # the grid is spent
        for asked in (first, *others):
            assert asked is not None
            study.tell(asked, RunStatus.SUCCEEDED, {"val_accuracy": 0.5})
        assert study.prepare() == 0 and study.ask("job-a/0") is None
    finally:
        study.close()


def test_a_pruned_grid_is_queued_in_a_seeded_shuffle_and_an_unpruned_one_in_order(
    tmp_path: Path,
) -> None:
    grid = {
        "optimizer.learning_rate": [0.01, 0.02, 0.05, 0.1, 0.2, 0.4],
        "model.dense_units": [8, 16, 32],
    }
    orders = {}
    for name, spec in {
        "plain": {},
        "asha-0": {"pruner": "asha"},
        "asha-0-again": {"pruner": "asha"},
        "asha-7": {"pruner": "asha", "seed": 7},
    }.items():
        search = load(write_search(tmp_path, name, {"parameters": grid, **spec}))
        url = f"sqlite:///{tmp_path / name}.db"
        with open_store(url) as store:
            worker.prepare(search, url, store)
        study = worker.SearchStudy(search, url)
        try:
            asked = [study.ask(f"w/{i}") for i in range(len(search.trials))]
        finally:
            study.close()
        orders[name] = [a.trial.index for a in asked if a]
        assert sorted(orders[name]) == list(range(18))  # every point once, none twice
    assert orders["plain"] == list(range(18))
    assert orders["asha-0"] == orders["asha-0-again"] != orders["plain"]  # seeded: repeatable
    assert orders["asha-7"] != orders["asha-0"]


GRID = {"optimizer.learning_rate": [0.01]}  # one listed trial


def _grid_study(tmp_path: Path, url: str, name: str, **spec: Any) -> worker.SearchStudy:
    search = load(write_search(tmp_path, name, {"parameters": GRID, "pruner": "asha", **spec}))
    with open_store(url) as store:
        worker.prepare(search, url, store)
    return worker.SearchStudy(search, url)


def test_interruptions_queue_a_trial_again_every_time_without_using_up_its_retries(
    tmp_path: Path, sqlite_url: str
) -> None:
    study = _grid_study(tmp_path, sqlite_url, "preempted-often")
    try:
        first = study.ask("pod/0")
        assert first is not None
        for _ in range(storage.RETRIES + 3):  # more preemptions than stale-heartbeat retries
            asked = study.ask("pod/0")
            assert asked is not None and asked.run_id == first.run_id
            study.requeue(asked)
            [waiting] = study.study.get_trials(states=(TrialState.WAITING,))
            assert worker.ATTR_WORKER not in waiting.user_attrs  # any worker may take the copy
            assert waiting.system_attrs["retry_history"] == []
            assert waiting.user_attrs["run_id"] == first.run_id
        study.requeue(first)  # already failed: no second copy
        assert len(study.study.get_trials(states=(TrialState.WAITING,))) == 1
    finally:
        study.close()


def test_queued_copies_do_not_count_toward_the_sampling_cap(
    tmp_path: Path, sqlite_url: str
) -> None:
    spec = {"method": "tpe", "trials": 2, "parameters": SPACE, "seed": 3}
    search = load(write_search(tmp_path, "capped", spec))
    with open_store(sqlite_url) as store:
        worker.prepare(search, sqlite_url, store)
    study = worker.SearchStudy(search, sqlite_url)
    try:
        asked = study.ask("w")
        assert asked is not None
        for _ in range(worker._SAMPLING_CAP * 2):
            study.requeue(asked)
            asked = study.ask("w")
            assert asked is not None and asked.trial.index == 0
        study.tell(asked, RunStatus.SUCCEEDED, {"val_accuracy": 0.5})
        second = study.ask("w")  # one index of two is used: the second is still sampled
        assert second is not None and second.trial.index == 1
    finally:
        study.close()


def test_a_listed_trial_given_up_after_its_retries_fails_the_worker_and_its_run(
    tmp_path: Path, sqlite_url: str
) -> None:
    from dataclasses import replace

    from cifar_ops.errors import CifarOpsError
    from cifar_ops.warehouse import synthetic

    study = _grid_study(tmp_path, sqlite_url, "given-up", heartbeat_seconds=1, grace_seconds=2)
    search = study.search
    try:
        asked = study.ask("gone/0")
        for attempt in range(storage.RETRIES + 1):  # its worker vanishes every time
            if attempt:
                asked = study.ask(f"gone/{attempt}")
            assert asked is not None and asked.trial.index == 0
            time.sleep(3.5)  # past the grace on a clock of whole seconds (SQLite)
            study.fail_stale()
        assert study.ask("pod/0") is None
        assert study.lost() == [(0, asked.run_id)]
    finally:
        study.close()
    with open_store(sqlite_url) as store:
        store.start_run(replace(synthetic.run_start("given-up"), run_id=asked.run_id))
        store.finish_run(asked.run_id, synthetic.finish(status=RunStatus.PREEMPTED))
        with pytest.raises(CifarOpsError, match=rf"lost trial\(s\) 0 \(run {asked.run_id}\)"):
            worker.work(search, sqlite_url, store, executor="local", worker="pod/0", once=True)
        summary = store.get_run(asked.run_id).summary
        assert summary.status == "failed" and "stale heartbeat" in (summary.status_reason or "")
    study = worker.SearchStudy(search, sqlite_url)
    try:
        assert study.prepare() == 1 and study.lost() == []  # the search run again queues it
    finally:
        study.close()


def test_an_ask_that_fails_after_taking_a_trial_queues_it_again_with_a_heartbeat(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _grid_study(tmp_path, sqlite_url, "ask-fails")
    try:

        def broken(params: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("the study database went away")

        monkeypatch.setattr(space, "point_of", broken)
        with pytest.raises(RuntimeError, match="went away"):
            study.ask("pod/0")
        monkeypatch.undo()
        [failed] = study.study.get_trials(states=(TrialState.FAIL,))
        assert study.storage.get_trial(failed._trial_id).state == TrialState.FAIL
        assert not study.study.get_trials(states=(TrialState.RUNNING,))  # none left unbeaten
        again = study.ask("pod/0")
        assert again is not None and again.trial.index == 0
    finally:
        study.close()


def test_a_trial_whose_run_another_process_holds_is_left_to_that_process(
    tmp_path: Path, sqlite_url: str
) -> None:
    from cifar_ops.errors import RunLocked
    from cifar_ops.records import RunStart

    study = _grid_study(tmp_path, sqlite_url, "held-elsewhere")
    try:
        asked = study.ask("pod/0")
        assert asked is not None
        config = asked.trial.config
        with open_store(sqlite_url) as owner, open_store(sqlite_url) as sink:
            owner.start_run(
                RunStart(
                    run_id=asked.run_id,
                    experiment=config.experiment,
                    model_name=config.model.name,
                    config=config.model_dump(mode="json"),
                    config_hash=config.config_hash(),
                )
            )
            with pytest.raises(RunLocked):
                worker.train_trial(study, asked, sink, executor="local")
            assert owner.get_run(asked.run_id).summary.status == "running"
        [trial] = study.study.get_trials()
        assert trial.state == TrialState.RUNNING  # not failed, no copy queued
    finally:
        study.close()


def test_local_worker_names_are_unique_across_hosts_and_containers() -> None:
    import socket

    from cifar_ops.executors.local import worker_name

    names = {worker_name(0) for _ in range(50)}
    assert len(names) == 50
    assert all(socket.gethostname() in name and name.endswith("-0") for name in names)


class FlakyReport:
    """Wraps a trial's `report`: the study database refuses the first `failures` calls."""

    def __init__(self, report: Any, failures: int) -> None:
        self.report, self.failures = report, failures

    def __call__(self, value: float, step: int) -> None:
        from sqlalchemy.exc import OperationalError

        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        self.report(value, step)


def test_a_study_database_blip_while_reporting_is_retried_then_requeues_not_fails(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifar_ops.errors import WarehouseError
    from cifar_ops.search import pruning
    from cifar_ops.warehouse import synthetic

    monkeypatch.setattr(pruning, "RETRY_DELAYS_S", (0.0, 0.0))
    study = optuna.create_study(storage=optuna.storages.RDBStorage(sqlite_url))
    trial = study.ask()
    reporter = pruning.TrialReporter(trial, "val_accuracy")
    trial.report = FlakyReport(trial.report, failures=2)  # type: ignore[method-assign]
    reporter.on_epoch_record(synthetic.epoch(1))  # two failures, then the retry lands
    assert study.trials[0].intermediate_values == {1: pytest.approx(0.45)}
    trial.report = FlakyReport(trial.report, failures=3)  # type: ignore[method-assign]
    with pytest.raises(WarehouseError, match="failed reporting an epoch 3 times"):
        reporter.on_epoch_record(synthetic.epoch(2))  # infrastructure: the worker requeues


def test_a_worker_waits_a_bounded_time_for_a_study_lock_that_a_hung_worker_holds(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that hangs (a stalled pod, a half-open connection) is a clear error after
    STUDY_LOCK_TIMEOUT, not a worker blocked for ever; the waiter's session keeps no timeout."""
    from sqlalchemy import create_engine, text

    from cifar_ops.errors import WarehouseError
    from cifar_ops.warehouse.migrate import upgrade_database

    upgrade_database(postgres_url)
    study = _grid_study(tmp_path, postgres_url, "hung-holder")
    monkeypatch.setattr(worker, "STUDY_LOCK_TIMEOUT", "300ms")
    key = worker._lock_key("hung-holder")
    holder = create_engine(postgres_url)
    try:
        with holder.connect() as hung:
            hung.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            with pytest.raises(WarehouseError, match="held the study's lock for over 300ms"):
                study.ask("waiter")
            hung.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            hung.commit()
        asked = study.ask("waiter")
        assert asked is not None  # the lock is free again: the next ask proceeds
        with study.storage.engine.connect() as pooled:
            assert pooled.execute(text("SHOW lock_timeout")).scalar_one() == "0"
    finally:
        holder.dispose()
        study.close()

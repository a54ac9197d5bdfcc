"""The model registry on SQLite and the real PostgreSQL: versions, aliases, `--best`, references."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.errors import ModelError, UsageError
from cifar_ops.warehouse import open_store, synthetic
from cifar_ops.warehouse.migrate import upgrade_database
from cifar_ops.warehouse.registry import Registry, parse_reference
from cifar_ops.warehouse.schema import model_versions


@pytest.fixture
def store(database_url: str):
    upgrade_database(database_url)
    with open_store(database_url) as opened:
        yield opened


def finished_run(store, experiment: str = "reg", *, accuracy: float = 0.7, loss: float = 0.85):
    start = synthetic.run_start(experiment)
    store.start_run(start)
    done = replace(
        synthetic.finish(test_accuracy=accuracy),
        test_loss=loss,
        artifact_uri=f"s3://models/{start.run_id}/model.keras",
    )
    store.finish_run(start.run_id, done)
    return start


def test_versions_number_up_and_are_never_rewritten(store, monkeypatch) -> None:
    monkeypatch.setenv("CIFAR_OPS_USER", "ana")
    registry = Registry(store)
    first, second = finished_run(store, accuracy=0.6), finished_run(store, accuracy=0.8)
    v1 = registry.register(first.run_id[:10], "cifar-resnet", alias="champion")
    assert (v1.version, v1.run_id, v1.aliases) == (1, first.run_id, ("champion",))
    assert v1.model_uri == f"s3://models/{first.run_id}/model.keras"
    assert (v1.config_hash, v1.dataset_fingerprint) == (first.config_hash, "synthetic")
    assert (v1.test_accuracy, v1.registered_by) == (0.6, "ana")

    monkeypatch.setenv("CIFAR_OPS_USER", "ben")
    v2 = registry.register(second.run_id, "cifar-resnet")
    again = registry.register(first.run_id, "cifar-resnet")  # the same run again: a new version
    assert (v2.version, again.version) == (2, 3)
    assert registry.get("cifar-resnet", version=1) == v1  # untouched, alias and all
    assert registry.get("cifar-resnet").version == 3  # the latest
    moved = registry.set_alias("cifar-resnet", 2, "champion")
    assert moved.aliases == ("champion",)
    assert registry.get("cifar-resnet", version=1).aliases == ()
    assert registry.get("cifar-resnet", alias="champion").run_id == second.run_id
    assert registry.resolve("models:/cifar-resnet@champion").version == 2
    assert registry.resolve("models:/cifar-resnet/1").run_id == first.run_id
    assert [v.version for v in registry.versions("cifar-resnet")] == [3, 2, 1]
    with store.engine.connect() as conn:
        rows = conn.execute(select(model_versions.c.version, model_versions.c.registered_by))
        assert sorted(rows) == [(1, "ana"), (2, "ben"), (3, "ben")]
        view = (
            "reporting.model_registry"
            if store.dialect == "postgresql"
            else ("reporting_model_registry")
        )
        shown = conn.execute(text(f"select version, aliases from {view} order by version"))
        assert list(shown) == [(1, None), (2, "champion"), (3, None)]


def test_best_run_by_test_accuracy_then_lower_loss(store) -> None:
    registry = Registry(store)
    finished_run(store, "grid", accuracy=0.7, loss=0.5)
    tie_lower_loss = finished_run(store, "grid", accuracy=0.8, loss=0.4)
    finished_run(store, "grid", accuracy=0.8, loss=0.6)
    failed = synthetic.run_start("grid")
    store.start_run(failed)
    store.finish_run(failed.run_id, replace(synthetic.finish("failed", test_accuracy=0.99)))
    assert registry.best_run("grid") == tie_lower_loss.run_id
    with pytest.raises(ModelError, match="experiment 'empty' has no succeeded run"):
        registry.best_run("empty")


def test_concurrent_registrations_get_distinct_versions(store) -> None:
    run = finished_run(store)
    versions: list[int] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            versions.append(Registry(store).register(run.run_id, "raced").version)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(versions) == [1, 2, 3, 4]


def test_refusals_name_what_is_wrong(store) -> None:
    registry = Registry(store)
    running = synthetic.run_start("reg")
    store.start_run(running)
    with pytest.raises(ModelError, match="is running and has no model"):
        registry.register(running.run_id, "cifar-resnet")
    run = finished_run(store)
    with pytest.raises(UsageError, match="model name 'Bad_Name'"):
        registry.register(run.run_id, "Bad_Name")
    with pytest.raises(UsageError, match="alias '7'"):
        registry.register(run.run_id, "ok", alias="7")
    registry.register(run.run_id, "ok")
    with pytest.raises(ModelError, match="model 'ok' has no version 5; its versions are 1-1"):
        registry.set_alias("ok", 5, "champion")
    with pytest.raises(ModelError, match="model 'ok' has no alias 'prod'; its aliases: none"):
        registry.resolve("models:/ok@prod")
    with pytest.raises(ModelError, match="no registered model 'nope'; registered: ok"):
        registry.resolve("models:/nope/1")


@pytest.mark.parametrize(
    ("reference", "parsed"),
    [("models:/cifar-resnet@champion", ("cifar-resnet", None, "champion")),
     ("models:/cifar-resnet/12", ("cifar-resnet", 12, None))],
)  # fmt: skip
def test_parse_reference(reference: str, parsed: tuple) -> None:
    assert parse_reference(reference) == parsed


@pytest.mark.parametrize(
    "reference", ["models:/", "models:/a/b/c", "models:/a@b@c", "models:/a/0", "models:/a/x"]
)
def test_parse_reference_refuses(reference: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(reference)


def test_cli_register_best_alias_list_show(database_url: str, monkeypatch) -> None:
    upgrade_database(database_url)
    monkeypatch.setenv("CIFAR_OPS_DATABASE_URL", database_url)
    with open_store(database_url) as opened:
        finished_run(opened, "sweep", accuracy=0.5)
        best = finished_run(opened, "sweep", accuracy=0.9)
        other = finished_run(opened, "sweep", accuracy=0.6)
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, list(args))

    made = cli("models", "register", "--best", "sweep", "--name", "cifar-resnet", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["run_id"] == best.run_id
    plain = cli("models", "register", other.run_id[:8], "--name", "cifar-resnet", "--alias", "dev")
    assert plain.exit_code == 0, plain.output
    assert "registered models:/cifar-resnet/2 (dev)" in plain.stdout
    moved = cli("models", "alias", "cifar-resnet", "1", "dev")
    assert moved.exit_code == 0 and "dev -> models:/cifar-resnet/1" in moved.stdout
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(v["version"], v["aliases"]) for v in listed] == [(2, []), (1, ["dev"])]
    shown = json.loads(cli("models", "show", "models:/cifar-resnet@dev", "--json").stdout)
    assert shown["run_id"] == best.run_id and shown["test_accuracy"] == 0.9
    assert json.loads(cli("models", "show", "cifar-resnet", "--json").stdout)["version"] == 2

    both = cli("models", "register", best.run_id, "--best", "sweep", "--name", "x")
    assert both.exit_code == 2 and "either a RUN or --best" in both.output
    unknown = cli("models", "show", "models:/cifar-resnet@prod")
    assert unknown.exit_code == 6 and "has no alias 'prod'" in unknown.output
    bad = cli("models", "alias", "cifar-resnet", "1", "Prod!")
    assert bad.exit_code == 2 and "alias 'Prod!'" in bad.output

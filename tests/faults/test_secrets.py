"""No secret is printed, logged or stored.

A real `cifar-ops run` (synthetic, 1 epoch) logs to a PostgreSQL database through a role whose
password is in CIFAR_OPS_DATABASE_URL and pushes to a real Pushgateway behind basic auth (its
credentials in CIFAR_OPS_PUSHGATEWAY_USERNAME/_PASSWORD). Everything the run and the commands
after it printed, every file under the test's directory (artifacts, run directory) and a pg_dump
of the warehouse are then searched for either password. URLs that do not parse (quoted, a
leading space, no scheme, an unescaped `@`) are refused without printing theirs.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cifar_ops.warehouse.migrate import upgrade_database
from tests import pg_server
from tests.faults.warehouse_runs import cifar_ops, python, tiny_config
from tests.monitoring_support import GATEWAY_PASSWORD, GATEWAY_USER, http_get, pushgateway

DB_PASSWORD = "pg-S3cret@Xq9zK"  # either side of its `@` is a secret
# The CLI with every logger (SQLAlchemy, urllib3, cifar_ops, ...) at DEBUG on stderr.
DEBUG_LOGGING_CLI = (
    "import logging; logging.basicConfig(level=logging.DEBUG); "
    "from cifar_ops.cli import main; main()"
)
SECRETS = (DB_PASSWORD, quote(DB_PASSWORD, safe=""), "pg-S3cret", "Xq9zK", GATEWAY_PASSWORD)


@pytest.fixture
def secret_warehouse(postgres_admin_url: str) -> Iterator[tuple[str, str]]:
    """(URL with the role's password, admin URL) of a fresh database the role owns."""
    role = f"secret_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD :pw"), {"pw": DB_PASSWORD})
    try:
        with pg_server.fresh_database(postgres_admin_url) as admin_db:
            name = make_url(admin_db).database
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" OWNER TO {role}'))
            url = make_url(admin_db).set(username=role, password=DB_PASSWORD)
            yield url.render_as_string(hide_password=False), admin_db
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def leaked(text_or_bytes: str | bytes) -> list[str]:
    body = (
        text_or_bytes.decode(errors="replace")
        if isinstance(text_or_bytes, bytes)
        else text_or_bytes
    )
    return [secret for secret in SECRETS if secret in body]


def test_a_run_with_secret_bearing_settings_prints_logs_and_stores_no_secret(
    secret_warehouse: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, admin_db = secret_warehouse
    assert quote("@", safe="") in url  # the password as a URL carries it
    upgrade_database(url)
    monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_USERNAME", GATEWAY_USER)
    monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_PASSWORD", GATEWAY_PASSWORD)
    config = tiny_config(tmp_path / "secret.yaml")
    outputs: dict[str, str] = {}
    run_id = uuid.uuid4().hex
    (tmp_path / "gateway").mkdir()
    with pushgateway(tmp_path / "gateway", basic_auth=True) as gateway:
        overrides = ["--set", "train.epochs=1", "--set", f"monitoring.pushgateway={gateway}"]
        run = python(
            "-c",
            DEBUG_LOGGING_CLI,
            *("run", "-c", str(config), *overrides, "--metrics-port", "0", "--run-id", run_id),
            url=url,
        )
        outputs["run"] = run.stdout + run.stderr
        assert run.returncode == 0, outputs["run"][-3000:]
        assert "DEBUG" in run.stderr  # every logger's records are in what is searched
        assert run_id in run.stdout

        auth = (GATEWAY_USER, GATEWAY_PASSWORD)
        groups = json.loads(http_get(f"{gateway}/api/v1/metrics", auth=auth))["data"]
        assert [g["labels"]["run_id"] for g in groups] == [run_id]  # basic auth worked

        for name, args in {
            "show": ["runs", "show", run_id, "--json"],
            "list": ["runs", "list"],
            "db": ["db", "current"],
            "forget": ["forget-metrics", run_id],
        }.items():
            done = cifar_ops(url, *args)
            outputs[name] = done.stdout + done.stderr
            assert done.returncode == 0, outputs[name]
        assert json.loads(http_get(f"{gateway}/api/v1/metrics", auth=auth))["data"] == []

    for name, output in outputs.items():
        assert not leaked(output), (name, output[-3000:])
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert not leaked(path.read_bytes()), path
    dump = subprocess.run(
        [pg_server.PG_BIN / "pg_dump", "--data-only", "--dbname", _libpq(admin_db)],
        capture_output=True,
        check=True,
    ).stdout
    assert run_id.encode() in dump and b"pushgateway" in dump  # the stored config is in it
    assert not leaked(dump)


@pytest.mark.parametrize("password", [DB_PASSWORD, "pg-S3cret-Xq9zK"])
@pytest.mark.parametrize(
    "written",
    [
        '"postgresql+psycopg2://u:{pw}@127.0.0.1:1/db"',
        " postgresql+psycopg2://u:{pw}@127.0.0.1:1/db",
        "u:{pw}@127.0.0.1/db",
        "postgresql+psycopg2://u:{pw}@127.0.0.1:1/db",
        "postgresql+psycopg2://u@127.0.0.1:1/db?password={pw}",
    ],
)
def test_a_warehouse_url_that_fails_is_named_without_its_password(
    written: str, password: str
) -> None:
    done = cifar_ops(written.format(pw=password), "runs", "list", timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "***" in done.stderr
    assert not leaked(done.stdout + done.stderr), done.stderr


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

"""Shared fixtures: a real PostgreSQL database and a SQLite database per test, CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests import pg_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Superuser URL of the session's PostgreSQL server (started if needed)."""
    with pg_server.admin_url() as url:
        pg_server.wait_until_ready(url)
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test only."""
    with pg_server.fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for this test only."""
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on real PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _isolated_cwd_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test runs in its own temp dir (use REPO for repo files) with no developer settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR_OPS_ARTIFACTS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_OPS_DATA_CACHE", str(tmp_path / "data-cache"))
    monkeypatch.delenv("CIFAR_OPS_DATABASE_URL", raising=False)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

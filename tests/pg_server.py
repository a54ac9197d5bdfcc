"""The real PostgreSQL 15 server the tests use, found or started once per session.

Order: `CIFAR_OPS_TEST_DATABASE_URL` (an admin URL); as root, Debian's cluster started with
`pg_ctlcluster` and the `cifar_ops_test` superuser made by scripts/start_postgres.sh; otherwise a
throwaway cluster made with initdb in a temp dir. Each test then gets a database of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def admin_url() -> Iterator[str]:
    """Yield a superuser URL to a running PostgreSQL 15 (the `postgres` maintenance database)."""
    given = os.environ.get("CIFAR_OPS_TEST_DATABASE_URL")
    if given:
        yield given
        return
    if os.geteuid() == 0:
        subprocess.run(["bash", str(REPO / "scripts" / "start_postgres.sh")], check=True)
        yield "postgresql+psycopg2://cifar_ops_test:cifar_ops_test@127.0.0.1:5432/postgres"
        return
    with _throwaway_cluster() as url:
        yield url


@contextmanager
def _throwaway_cluster() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: run `make test` (apt postgresql-15)")
    root = Path(tempfile.mkdtemp(prefix="cifar-ops-pg-"))
    data, port, user = root / "data", _free_port(), os.environ.get("USER", "postgres")
    subprocess.run(
        [PG_BIN / "initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [PG_BIN / "pg_ctl", "-D", data, "-o", opts, "-l", root / "log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


def wait_until_ready(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            engine = create_engine(url)
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    """Create an empty database for one test and drop it (and its connections) afterwards."""
    name = f"cifar_ops_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

"""A throwaway PostgreSQL 15 cluster that a fault test owns: it may stop and restart it at will.

The shared test server (tests/pg_server.py) must stay up for every other test, so an outage is
staged on a cluster of its own, in a temp dir, on a free port. As root (initdb refuses root) the
cluster belongs to the `postgres` user. `stop_command` is a plain argv, so a child process (the
run under test) can stop the server from inside a training callback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.pg_server import PG_BIN, _free_port, wait_until_ready

DATABASE = "cifar_ops"


class Cluster:
    def __init__(self, root: Path, port: int, user: str, as_user: list[str]):
        self.root, self.port, self.user = root, port, user
        self.data = root / "data"
        self._as_user = as_user
        self.url = f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{DATABASE}"

    def _pg_ctl(self, *args: str) -> list[str]:
        return [*self._as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]

    @property
    def stop_command(self) -> list[str]:
        """Stop now: sessions are cut, the server is gone until `start`."""
        return self._pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "log")
        subprocess.run(self._pg_ctl("-o", opts, "-l", log, "-w", "start"), check=True)
        wait_until_ready(self.url.rsplit("/", 1)[0] + "/postgres")

    def stop(self) -> None:
        subprocess.run(self.stop_command, check=True, capture_output=True)

    def running(self) -> bool:
        status = subprocess.run(self._pg_ctl("status"), capture_output=True, check=False)
        return status.returncode == 0


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster with an empty `cifar_ops` database; removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: run `make test` (apt postgresql-15)")
    root = Path(tempfile.mkdtemp(prefix="cifar-ops-fault-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        user, as_user = "postgres", ["runuser", "-u", "postgres", "--"]
    else:
        user, as_user = os.environ.get("USER", "postgres"), []
    cluster = Cluster(root, _free_port(), user, as_user)
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", user]
        + ["--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    try:
        cluster.start()
        admin = create_engine(cluster.url.rsplit("/", 1)[0] + "/postgres")
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"CREATE DATABASE {DATABASE}"))
        admin.dispose()
        yield cluster
    finally:
        subprocess.run(cluster._pg_ctl("-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

"""One live process per run id, enforced by the warehouse the run writes to.

Pods of one run can land on different nodes, so a local lock file is not enough where the
warehouse is PostgreSQL: there the lock is a session-level advisory lock on a connection of its
own, held from `start_run` to `finish_run` (or `close`). SQLite is one machine by construction, so
there it is an `flock` on a file beside the database file. Both vanish with the process that holds
them, so a killed or preempted run can resume. A process that exits closes its connection; one
whose machine died (node crash, partition) is noticed by TCP keepalives set on the lock's session
on both ends, so PostgreSQL ends the session and frees the lock within `LOCK_RELEASE_BOUND_S`.

The advisory lock also vanishes when the server restarts or its backend is killed while the run
lives on, so the store calls `ensure` before each write: a lock found gone is taken again on a
new session, or, when another process took it meanwhile, the run stops with `RunLockLost`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from cifar_ops.errors import RunLocked, RunLockLost, WarehouseError
from cifar_ops.warehouse import migrate
from cifar_ops.warehouse.engine import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    driver_reason,
)

_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,64}")
# The server's TCP keepalives on the lock's session (the client's are the engine's, see
# `engine.PG_KEEPALIVES`): a holder whose machine vanished is dropped, and its lock freed, after
# at most idle + interval x count seconds; `tcp_user_timeout` bounds unacknowledged sends too.
LOCK_RELEASE_BOUND_S = KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT
_SERVER_KEEPALIVES = (
    f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S}",
    f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S}",
    f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}",
    f"SET tcp_user_timeout = {LOCK_RELEASE_BOUND_S * 1000}",
)


class RunLock(Protocol):
    def release(self) -> None:
        """Let another process run this id; never raises."""

    def ensure(self) -> None:
        """Check the lock is still held before a write; take it again if it was lost and nobody
        else holds it, else raise RunLockLost."""


def lock_key(run_id: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock` (the same in every process)."""
    digest = hashlib.blake2b(f"cifar-ops run {run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def acquire(engine: Engine, run_id: str, where: str) -> RunLock:
    """Hold the run's lock, or raise RunLocked (a WarehouseError, exit 4) when another process
    holds it."""
    if engine.dialect.name == "postgresql":
        held: RunLock | None = _AdvisoryLock.try_acquire(engine, run_id, where)
    else:
        path = lock_path(engine, run_id)
        held = _FileLock.try_acquire(path) if path is not None else _NoLock()
    if held is None:
        raise RunLocked(
            f"run {run_id} is already running in another process (the warehouse {where} holds "
            "its lock): wait for that process to end, a stopped one frees it, or use a new "
            "--run-id"
        )
    return held


def lock_path(engine: Engine, run_id: str) -> Path | None:
    """`<database>.locks/<run_id>.lock` for a SQLite file; None for an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:" or "mode=memory" in str(engine.url):
        return None
    name = run_id if _SAFE_NAME.fullmatch(run_id) else f"{lock_key(run_id) & (2**64 - 1):016x}"
    db = Path(database.removeprefix("file:").split("?", 1)[0])
    return db.with_name(db.name + ".locks") / f"{name}.lock"


class _NoLock:
    """An in-memory SQLite database lives in one process: nothing else can run into it."""

    def release(self) -> None:
        return None

    def ensure(self) -> None:
        return None


class _FileLock:
    """An flock on `<database>.locks/<run_id>.lock`, whose file is removed on release so a
    warehouse that ran many runs keeps no file per run. Removing a lock file is safe only if an
    acquirer checks, once it holds the flock, that the path still names the file it locked (a
    releaser may have unlinked it in between); if not it tries again on the new file."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self._path = path

    @classmethod
    def try_acquire(cls, path: Path) -> _FileLock | None:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _names_same_file(path, fd):
                    return cls(fd, path)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # locked a file its releaser had just unlinked: take the new one

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()  # while still holding the flock, so no one else has it
            os.close(fd)  # closing the last descriptor drops the flock

    def ensure(self) -> None:
        return None  # a flock lasts as long as its open descriptor: it cannot be lost under us


def _names_same_file(path: Path, fd: int) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


class _AdvisoryLock:
    def __init__(self, connection: Connection, key: int, engine: Engine, run_id: str, where: str):
        self._connection: Connection | None = connection
        self._key = key
        self._engine, self._run_id, self._where = engine, run_id, where

    @classmethod
    def try_acquire(cls, engine: Engine, run_id: str, where: str) -> _AdvisoryLock | None:
        key = lock_key(run_id)
        try:
            connection = engine.execution_options(isolation_level="AUTOCOMMIT").connect()
        except SQLAlchemyError as exc:
            raise migrate.unreachable(engine, exc) from exc
        # Out of the pool: the lock lives as long as this session, and a pooled session would
        # keep it after `release` if the unlock failed.
        connection.detach()
        try:
            for statement in _SERVER_KEEPALIVES:
                connection.execute(text(statement))
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            locked = bool(got.scalar_one())
        except SQLAlchemyError as exc:
            connection.close()
            raise WarehouseError(
                f"the warehouse {where} failed locking run {run_id}: {driver_reason(exc)}"
            ) from exc
        except BaseException:
            connection.close()
            raise
        if not locked:
            connection.close()
            return None
        return cls(connection, key, engine, run_id, where)

    def ensure(self) -> None:
        if self._holds():
            return
        self.release()  # the old session is gone or no longer holds the key: drop it
        again = _AdvisoryLock.try_acquire(self._engine, self._run_id, self._where)
        if again is None:
            raise RunLockLost(
                f"run {self._run_id} lost its lock in the warehouse {self._where} (the server "
                "restarted or its session was ended) and another process holds it now: this "
                "process stops writing the run; that process owns it"
            )
        self._connection, again._connection = again._connection, None

    def _holds(self) -> bool:
        """Whether the lock's own session is alive and holds the key: `pg_locks` shows a bigint
        advisory key as its high and low 32 bits in classid and objid, with objsubid 1."""
        connection = self._connection
        if connection is None:
            return False
        key = self._key & (2**64 - 1)
        try:
            held = connection.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted AND objsubid = 1"
                    " AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid))"
                ),
                {"high": key >> 32, "low": key & (2**32 - 1)},
            ).scalar_one()
        except SQLAlchemyError:  # a killed backend or a restarted server: its locks are gone
            return False
        return bool(held)

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(SQLAlchemyError):  # a lost server has dropped the lock already
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        with contextlib.suppress(SQLAlchemyError):
            connection.close()

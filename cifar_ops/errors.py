"""One error type per boundary; only the CLI turns them into an exit code and a one-line message."""

from __future__ import annotations


class CifarOpsError(Exception):
    """Base of every error a user can fix; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(CifarOpsError):
    """A run or search config is invalid: names the file, the dotted key and what is allowed."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UsageError(CifarOpsError):
    """A command-line argument names something the command must not use (e.g. `-o /dev/null`)."""

    exit_code = 2


class DataError(CifarOpsError):
    """A dataset cannot be read: missing directory, corrupt image, unreachable archive."""

    exit_code = 3


class WarehouseError(CifarOpsError):
    """The warehouse cannot be reached, is behind the migration head, or refused a write."""

    exit_code = 4


class RunLocked(WarehouseError):
    """Another live process holds the run's lock: that process owns the run; nothing is wrong
    with it, so a study worker leaves its trial alone rather than failing or queueing it."""


class RunLockLost(RunLocked):
    """The run's lock vanished under it (the warehouse restarted, its session was killed) and
    another process took it before this one could again: writing on would interleave two
    processes' rows, so this one stops."""


class SubmitError(CifarOpsError):
    """Helm, kubeconfig or the Kubernetes API refused or is missing."""

    exit_code = 5


class ModelError(CifarOpsError):
    """A saved model or weights file cannot be loaded or does not fit the input."""

    exit_code = 6


class MonitoringError(CifarOpsError):
    """The metrics port is taken, or the Pushgateway refused or is unreachable."""

    exit_code = 7


class StorageError(CifarOpsError):
    """The run directory cannot be written: the disk or quota is full, or it is read-only.

    The checkpoint before the failed write is kept, so the same run id resumes once there is room.
    """

    exit_code = 8


class Preempted(KeyboardInterrupt):
    """SIGTERM arrived (a pod being stopped): the run was marked preempted; the same id resumes.

    A `KeyboardInterrupt` so that no `except Exception` records it as the run's failure and so
    that whatever handles Ctrl-C handles it too; not a `CifarOpsError`, since nothing is wrong.
    """

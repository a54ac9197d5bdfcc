"""Process-wide settings read from the environment, in one place."""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path

from cifar_ops.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///cifar-ops.db"


def database_url() -> str:
    """The warehouse URL: `CIFAR_OPS_DATABASE_URL`, else the embedded SQLite file in the cwd."""
    return os.environ.get("CIFAR_OPS_DATABASE_URL") or DEFAULT_DATABASE_URL


def artifacts_location() -> str:
    """Where run artifacts (checkpoints, `.keras` models) go: `CIFAR_OPS_ARTIFACTS`, else ./runs.

    A local path, or an object-store URL (`s3://bucket/prefix`, `gs://`, `az://`): then a run
    writes to `scratch_dir()` and publishes there.
    """
    return os.environ.get("CIFAR_OPS_ARTIFACTS") or "runs"


def artifacts_dir() -> Path:
    """The local artifacts directory (`artifacts_location()` when it is a path)."""
    return Path(artifacts_location())


def scratch_dir() -> Path:
    """Local working copy of runs whose artifacts go to an object store: `CIFAR_OPS_SCRATCH_DIR`.

    Default: `cifar-ops-scratch` in the system temp directory. A pod mounts an emptyDir here.
    """
    default = Path(tempfile.gettempdir()) / "cifar-ops-scratch"
    return Path(os.environ.get("CIFAR_OPS_SCRATCH_DIR") or default)


def data_cache_dir() -> Path:
    """Where downloaded datasets are cached: `CIFAR_OPS_DATA_CACHE`, else ~/.cache/cifar-ops."""
    default = Path.home() / ".cache" / "cifar-ops"
    return Path(os.environ.get("CIFAR_OPS_DATA_CACHE") or default)


def metrics_address() -> str:
    """Where a run's /metrics listens: `CIFAR_OPS_METRICS_ADDRESS`, else loopback only.

    The chart sets 0.0.0.0 in its pods so Prometheus can scrape them.
    """
    return os.environ.get("CIFAR_OPS_METRICS_ADDRESS") or "127.0.0.1"


def replicas() -> int | None:
    """Replicas a run trains on when set: `CIFAR_OPS_REPLICAS` (over CPUs too, for tests).

    Unset, a run takes `resources.gpus` GPUs where there are GPUs, else one replica.
    """
    raw = os.environ.get("CIFAR_OPS_REPLICAS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"CIFAR_OPS_REPLICAS={raw!r}: a whole number of replicas from 1 up")
    return int(raw)


def pushgateway_credentials() -> tuple[str, str] | None:
    """Basic-auth user and password for the Pushgateway, never from a config (configs are stored).

    `CIFAR_OPS_PUSHGATEWAY_USERNAME` and `CIFAR_OPS_PUSHGATEWAY_PASSWORD`; None when no user is set.
    """
    username = os.environ.get("CIFAR_OPS_PUSHGATEWAY_USERNAME")
    if not username:
        return None
    return username, os.environ.get("CIFAR_OPS_PUSHGATEWAY_PASSWORD", "")


def user_name() -> str:
    """Who is acting, for the registry's records: `CIFAR_OPS_USER`, else the login name."""
    named = os.environ.get("CIFAR_OPS_USER")
    if named:
        return named[:128]
    try:
        return getpass.getuser()[:128]
    except (OSError, KeyError):  # a container user with no passwd entry and no $USER
        return "unknown"

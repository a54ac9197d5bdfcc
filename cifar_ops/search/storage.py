"""Where a search's Optuna study lives: beside the warehouse, in tables of Optuna's own.

Optuna keeps its studies in SQLAlchemy tables versioned by its own Alembic history, with an
`alembic_version` table of its own. So they never meet the warehouse's: on PostgreSQL they live
in the `optuna` schema of the warehouse database (created by migration 0003; the connection's
`search_path` points Optuna there), on SQLite in a sibling file (`warehouse.db` ->
`warehouse.optuna.db`). `cifar-ops db upgrade` creates or upgrades Optuna's tables there, so
training workers never race to create them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from cifar_ops.errors import ConfigError, WarehouseError

if TYPE_CHECKING:
    import optuna

OPTUNA_SCHEMA = "optuna"  # PostgreSQL schema of Optuna's tables
RETRIES = 3  # times a trial whose worker vanished (stale heartbeat) is queued again
WORKER_ATTR = "worker"  # user attribute naming who asked for a trial; a copy does not inherit it
GIVEN_UP = "given_up"  # system attribute of the FAIL record left when a trial's retries ran out


def study_url(warehouse_url: str) -> tuple[str, dict[str, Any]]:
    """The URL and engine arguments of the Optuna storage that goes with a warehouse URL."""
    url = make_url(warehouse_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or "mode=memory" in warehouse_url:
            raise ConfigError(
                "a search run through an Optuna study needs a warehouse its workers share: "
                "a SQLite file or PostgreSQL, not an in-memory database"
            )
        path = Path(database)
        sibling = path.with_name(f"{path.stem}.{OPTUNA_SCHEMA}{path.suffix or '.db'}")
        return url.set(database=str(sibling)).render_as_string(hide_password=False), {
            "connect_args": {"timeout": 60}
        }
    options = f"-c search_path={OPTUNA_SCHEMA}"
    return url.render_as_string(hide_password=False), {
        "connect_args": {"options": options},
        "pool_pre_ping": True,
    }


def open_storage(
    warehouse_url: str,
    *,
    heartbeat_seconds: int | None = None,
    grace_seconds: int | None = None,
    create: bool = False,
) -> optuna.storages.RDBStorage:
    """Optuna's storage for this warehouse. With a heartbeat, a running trial whose worker has
    not beaten for `grace_seconds` is failed by the next worker that asks, and queued again (up to
    `RETRIES` times, `queue_again`) with its parameters, user attributes (its run id) and reported
    epochs."""
    import optuna
    from optuna.storages import RDBStorage

    url, engine_kwargs = study_url(warehouse_url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with quiet_experimental():
        beat: dict[str, Any] = {}
        if heartbeat_seconds is not None:
            beat = {
                "heartbeat_interval": heartbeat_seconds,
                "grace_period": grace_seconds or 3 * heartbeat_seconds,
                "heartbeat_stale_trial_callback": _queue_stale_again,
            }
        try:
            return RDBStorage(
                url, engine_kwargs=engine_kwargs, skip_table_creation=not create, **beat
            )
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy or Optuna's version check
            from cifar_ops.redaction import redact_text, redact_url

            raise WarehouseError(
                f"cannot open the Optuna study storage at {redact_url(url)}: "
                f"{redact_text(str(exc))} "
                "(run `cifar-ops db upgrade`)"
            ) from None


def create_storage(warehouse_url: str) -> str:
    """Create or upgrade Optuna's tables for this warehouse (`cifar-ops db upgrade`); returns
    where they are, password hidden."""
    from cifar_ops.redaction import redact_url

    storage = open_storage(warehouse_url, create=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
    finally:
        storage.engine.dispose()
    url, _ = study_url(warehouse_url)
    where = f"schema {OPTUNA_SCHEMA}" if not url.startswith("sqlite") else "file"
    return f"{redact_url(url)} ({where})"


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna marks heartbeats and retries experimental; they are what this module relies on."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # workers beat themselves (`SearchStudy.heartbeat`): ask/tell is not Study.optimize
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def fail_stale(study: optuna.Study) -> None:
    """Fail (and queue again) the running trials whose worker stopped beating."""
    from optuna.storages import fail_stale_trials

    with quiet_experimental():
        fail_stale_trials(study)


def queue_again(study: optuna.Study, trial: optuna.trial.FrozenTrial, *, stale: bool) -> bool:
    """Queue a waiting copy of a failed trial: its parameters, user attributes (run id, index; not
    the worker's name, so any worker may take it) and reported epochs, as Optuna's
    `RetryHeartbeatStaleTrialCallback` does. Only a `stale` trial (its worker vanished) uses one
    of its `RETRIES`; an interruption or infrastructure error does not. When a stale trial has
    used them up, a FAIL record marked `GIVEN_UP` is added instead and False returned, so the
    search can say which trial it lost rather than end without it."""
    import optuna
    from optuna.trial import TrialState

    history = list(trial.system_attrs.get("retry_history", []))
    if stale:
        history.append(trial.number)
    given_up = len(history) > RETRIES
    system_attrs = {
        "failed_trial": trial.number,
        **trial.system_attrs,
        "retry_history": history,
    }
    if given_up:
        system_attrs[GIVEN_UP] = True
    study.add_trial(
        optuna.create_trial(
            state=TrialState.FAIL if given_up else TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k != WORKER_ATTR},
            system_attrs=system_attrs,
            intermediate_values=trial.intermediate_values,
        )
    )
    return not given_up


def _queue_stale_again(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    queue_again(study, trial, stale=True)

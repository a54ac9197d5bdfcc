"""The model registry: named models whose numbered versions point at a run's model, and aliases
(`champion`, `staging`) that name one version each and move atomically.

A version is written once and never updated: registering again adds the next number. A model
reference `models:/NAME/VERSION` or `models:/NAME@ALIAS` resolves here to the version's model URI,
wherever a model path is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from cifar_ops import settings
from cifar_ops.errors import ModelError, UsageError, WarehouseError
from cifar_ops.warehouse import bulk
from cifar_ops.warehouse.schema import model_aliases, model_info, model_versions, registered_models
from cifar_ops.warehouse.store import Store

SCHEME = "models:/"
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
ALIAS = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a letter first: never a version number
_REFERENCE = re.compile(r"models:/([^/@]+)(?:/([^/@]+)|@([^/@]+))")
_RETRIES = 5  # concurrent registrations of one name: the loser of a version number retries


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: what it points at and the run's numbers when it was registered."""

    name: str
    version: int
    run_id: str
    model_uri: str
    config_hash: str
    dataset_fingerprint: str | None
    test_accuracy: float | None
    test_loss: float | None
    registered_by: str
    registered_at: datetime
    aliases: tuple[str, ...]

    @property
    def reference(self) -> str:
        return f"{SCHEME}{self.name}/{self.version}"


def is_reference(text: str) -> bool:
    """Whether `text` is meant as a registry reference (`models:/...`)."""
    return text.startswith(SCHEME)


def check_name(name: str) -> str:
    """A model name: lowercase letters, digits and '-', 1-63, starting and ending alphanumeric."""
    if not NAME.fullmatch(name):
        raise UsageError(
            f"model name {name!r}: use 1-63 lowercase letters, digits and '-', starting and "
            "ending with a letter or digit (e.g. cifar-resnet)"
        )
    return name


def check_alias(alias: str) -> str:
    """An alias: as a model name but starting with a letter, so it never reads as a version."""
    if not ALIAS.fullmatch(alias):
        raise UsageError(
            f"alias {alias!r}: use 1-63 lowercase letters, digits and '-', starting with a letter "
            "and ending with a letter or digit (e.g. champion)"
        )
    return alias


def parse_reference(text: str) -> tuple[str, int | None, str | None]:
    """(name, version, alias) of `models:/NAME/VERSION` or `models:/NAME@ALIAS`."""
    found = _REFERENCE.fullmatch(text)
    if found is None:
        raise UsageError(
            f"{text!r}: a registered model is models:/NAME/VERSION or models:/NAME@ALIAS "
            "(e.g. models:/cifar-resnet@champion)"
        )
    name, version, alias = found.groups()
    check_name(name)
    if alias is not None:
        return name, None, check_alias(alias)
    if not version.isdigit() or int(version) < 1:
        raise UsageError(f"{text!r}: version {version!r} is not a number from 1")
    return name, int(version), None


class Registry:
    """Reads and writes of the registry tables, one transaction per method, on an open store."""

    def __init__(self, store: Store):
        self._store = store

    def register(self, run: str, name: str, *, alias: str | None = None) -> ModelVersion:
        """Add the next version of `name` for a succeeded run (id or prefix) that saved a model;
        with `alias`, point it at the new version in the same transaction."""
        check_name(name)
        if alias is not None:
            check_alias(alias)
        summary = self._store.get_run(run).summary
        if summary.status != "succeeded" or not summary.artifact_uri:
            raise ModelError(
                f"run {summary.run_id} is {summary.status} and has no model to register; "
                "register a succeeded run"
            )
        who, now = settings.user_name(), datetime.now(UTC)
        row = {
            "name": name,
            "run_id": summary.run_id,
            "model_uri": summary.artifact_uri,
            "config_hash": summary.config_hash,
            "dataset_fingerprint": summary.dataset_fingerprint,
            "test_accuracy": summary.test_accuracy,
            "test_loss": summary.test_loss,
            "registered_by": who,
            "registered_at": now,
        }
        for attempt in range(_RETRIES):
            try:
                with self._store.transaction(f"registering a version of {name!r}") as conn:
                    bulk.upsert(conn, registered_models, {"name": name}, update=[])
                    latest = select(func.max(model_versions.c.version)).where(
                        model_versions.c.name == name
                    )
                    version = int(conn.execute(latest).scalar_one() or 0) + 1
                    conn.execute(insert(model_versions).values(**row, version=version))
                    if alias is not None:
                        _point(conn, name, alias, version, who, now)
                break
            except WarehouseError as exc:
                if not isinstance(exc.__cause__, IntegrityError) or attempt == _RETRIES - 1:
                    raise
        return self.get(name, version=version)

    def best_run(self, experiment: str) -> str:
        """The succeeded run of `experiment` with a model and the best test accuracy; ties go to
        the lower test loss, then the lower run id."""
        query = (
            select(model_info.c.run_id)
            .where(
                model_info.c.experiment == experiment,
                model_info.c.status == "succeeded",
                model_info.c.artifact_uri.is_not(None),
                model_info.c.test_accuracy.is_not(None),
            )
            .order_by(
                model_info.c.test_accuracy.desc(),
                model_info.c.test_loss.is_(None),
                model_info.c.test_loss,
                model_info.c.run_id,
            )
            .limit(1)
        )
        with self._store.transaction(f"finding the best run of {experiment!r}") as conn:
            run_id = conn.execute(query).scalar()
        if run_id is None:
            raise ModelError(
                f"experiment {experiment!r} has no succeeded run with a model and a test "
                "accuracy; `cifar-ops runs list --experiment` shows its runs"
            )
        return str(run_id)

    def set_alias(self, name: str, version: int, alias: str) -> ModelVersion:
        """Point `alias` at `version` of `name` (from whichever version it named), atomically."""
        check_name(name)
        check_alias(alias)
        with self._store.transaction(f"setting alias {alias!r} of {name!r}") as conn:
            _require_version(conn, name, version)
            _point(conn, name, alias, version, settings.user_name(), datetime.now(UTC))
        return self.get(name, version=version)

    def get(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> ModelVersion:
        """One version by number or alias; the latest without either."""
        with self._store.transaction(f"reading model {name!r}") as conn:
            if alias is not None:
                query = select(model_aliases.c.version).where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
                version = conn.execute(query).scalar()
                if version is None:
                    _require_model(conn, name)
                    raise ModelError(
                        f"model {name!r} has no alias {alias!r}; its aliases: "
                        f"{_alias_list(conn, name)} (`cifar-ops models alias` sets one)"
                    )
            elif version is None:
                latest = select(func.max(model_versions.c.version)).where(
                    model_versions.c.name == name
                )
                version = conn.execute(latest).scalar()
                if version is None:
                    _require_model(conn, name)
            _require_version(conn, name, int(version))  # type: ignore[arg-type]
            return _versions(conn, name, int(version))[0]  # type: ignore[arg-type]

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of `name`, or of all models), by name then newest version first."""
        with self._store.transaction("listing registered models") as conn:
            if name is not None:
                _require_model(conn, name)
            return _versions(conn, name)

    def resolve(self, reference: str) -> ModelVersion:
        """The version a `models:/NAME/VERSION` or `models:/NAME@ALIAS` reference names."""
        name, version, alias = parse_reference(reference)
        return self.get(name, version=version, alias=alias)


def resolve_reference(reference: str) -> ModelVersion:
    """`Registry.resolve` on the warehouse of this environment."""
    from cifar_ops.warehouse import open_store

    with open_store() as store:
        return Registry(store).resolve(reference)


def _point(conn: Connection, name: str, alias: str, version: int, who: str, when: Any) -> None:
    row = {"name": name, "alias": alias, "version": version, "set_by": who, "set_at": when}
    bulk.upsert(conn, model_aliases, row)  # one statement: the alias moves, never vanishes


def _require_model(conn: Connection, name: str) -> None:
    query = select(registered_models.c.name).where(registered_models.c.name == name)
    if conn.execute(query).first() is None:
        known = conn.execute(select(registered_models.c.name).order_by("name")).scalars().all()
        raise ModelError(
            f"no registered model {name!r}; registered: {', '.join(known) or 'none'} "
            "(`cifar-ops models register RUN --name NAME` adds one)"
        )


def _require_version(conn: Connection, name: str, version: int) -> None:
    query = select(model_versions.c.version).where(
        model_versions.c.name == name, model_versions.c.version == version
    )
    if conn.execute(query).first() is None:
        _require_model(conn, name)
        latest = conn.execute(
            select(func.max(model_versions.c.version)).where(model_versions.c.name == name)
        ).scalar()
        raise ModelError(f"model {name!r} has no version {version}; its versions are 1-{latest}")


def _alias_list(conn: Connection, name: str) -> str:
    query = select(model_aliases.c.alias).where(model_aliases.c.name == name).order_by("alias")
    return ", ".join(conn.execute(query).scalars()) or "none"


def _versions(conn: Connection, name: str | None, version: int | None = None) -> list[ModelVersion]:
    query = select(model_versions)
    if name is not None:
        query = query.where(model_versions.c.name == name)
    if version is not None:
        query = query.where(model_versions.c.version == version)
    query = query.order_by(model_versions.c.name, model_versions.c.version.desc())
    rows = conn.execute(query).mappings().all()
    aliases: dict[tuple[str, int], list[str]] = {}
    alias_query = select(model_aliases).order_by(model_aliases.c.alias)
    if name is not None:
        alias_query = alias_query.where(model_aliases.c.name == name)
    for row in conn.execute(alias_query).mappings():
        aliases.setdefault((row["name"], row["version"]), []).append(row["alias"])
    results = []
    for row in rows:
        values = dict(row)
        when = values["registered_at"]
        values["registered_at"] = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        found = tuple(aliases.get((row["name"], row["version"]), ()))
        results.append(ModelVersion(**values, aliases=found))
    return results

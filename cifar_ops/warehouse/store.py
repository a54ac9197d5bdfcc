"""The warehouse store: the `RunSink` every run writes to, and the reads behind the CLI and reports.

One managed transaction per public method; every write is an upsert on a natural key, so a
retried pod or a re-sent batch rewrites the same rows. Reads return the plain dataclasses of
`results`, never rows. Database failures become `WarehouseError`s that name the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    Engine,
    RowMapping,
    Select,
    and_,
    case,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cifar_ops import settings
from cifar_ops.errors import ConfigError, WarehouseError
from cifar_ops.records import (
    HEADLINE_METRICS,
    TERMINAL_STATUSES,
    CalibrationBin,
    ClassMetric,
    EpochRecord,
    EvaluationRecord,
    RunFinish,
    RunStart,
)
from cifar_ops.redaction import redact_text
from cifar_ops.warehouse import bulk, migrate, runids, runlock
from cifar_ops.warehouse.engine import create_warehouse_engine, driver_reason, masked
from cifar_ops.warehouse.results import (
    EvaluationResult,
    ExperimentSummary,
    PredictionRow,
    RunDetail,
    RunSummary,
)
from cifar_ops.warehouse.schema import (
    RUN_STATUSES,
    calibration_bins,
    class_metrics,
    confusion_matrix,
    epoch_stats,
    evaluations,
    experiments,
    model_info,
    predictions_log,
)
from cifar_ops.warehouse.views import VIEW_NAMES, qualified_name

_PREDICTION_COLUMNS = (
    "run_id",
    "split",
    "image_index",
    "true_class",
    "predicted_class",
    "confidence",
    "correct",
    "image_ref",
)


def open_store(url: str | None = None) -> Store:
    """The warehouse at `url` (default `CIFAR_OPS_DATABASE_URL`), schema checked or applied.

    SQLite is migrated to head on first use; PostgreSQL must already be at head.
    """
    url = url or settings.database_url()
    engine = create_warehouse_engine(url)
    try:
        migrate.ensure_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything is stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Store:
    """Reads and idempotent writes of runs; implements `cifar_ops.records.RunSink`."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self.url = masked(engine.url.render_as_string(hide_password=False))
        self.dialect = engine.dialect.name
        self._locks: dict[str, runlock.RunLock] = {}  # runs this store started and not finished

    @property
    def engine(self) -> Engine:
        """The engine, for read-only SQL over the reporting views (HTML report, export)."""
        return self._engine

    def close(self) -> None:
        """Release the locks of runs still open here, then the connections."""
        for run_id in list(self._locks):
            self._release(run_id)
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def transaction(self, action: str) -> AbstractContextManager[Connection]:
        """One transaction for a warehouse module beside the store (the model registry, scoring);
        failures become a WarehouseError naming `action`."""
        return self._transaction(action)

    @contextmanager
    def _transaction(self, action: str) -> Iterator[Connection]:
        """One transaction; database failures become a WarehouseError saying what failed."""
        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            raise migrate.unreachable(self._engine, exc) from exc
        try:
            with connection, connection.begin():
                yield connection
        except IntegrityError as exc:
            reason = driver_reason(exc)
            raise WarehouseError(f"the warehouse {self.url} refused {action}: {reason}") from exc
        except SQLAlchemyError as exc:
            reason = driver_reason(exc)
            raise WarehouseError(f"the warehouse {self.url} failed {action}: {reason}") from exc

    # --- writes: the RunSink ------------------------------------------------------------------

    def register_queued(self, starts: Sequence[RunStart]) -> None:
        """Register submitted runs as queued; a run id already known keeps its state."""
        with self._transaction("registering queued runs") as conn:
            for start in starts:
                _ensure_experiment(conn, start.experiment)
                row = _run_row(start, status="queued")
                row["started_at"] = None
                bulk.upsert(conn, model_info, row, update=[])

    def register_search(
        self,
        experiment: str,
        *,
        method: str,
        parameters: dict[str, Any],
        trial_count: int,
        description: str | None = None,
        sampler: str | None = None,
        pruner: str | None = None,
    ) -> None:
        """Record a search (its method, space and size, and for a search run through an Optuna
        study its sampler and pruner) as the experiment its trials belong to."""
        row = {
            "name": experiment,
            "description": description,
            "search_method": method,
            "search_parameters": parameters,
            "trial_count": trial_count,
            "search_sampler": sampler,
            "search_pruner": pruner,
        }
        with self._transaction(f"registering search {experiment!r}") as conn:
            bulk.upsert(conn, experiments, row)

    def start_run(self, start: RunStart) -> None:
        """Create the run as running, or flip an existing (queued, interrupted) one to running.

        The run's lock is taken first and held until `finish_run`: a second live process on the
        same run id gets a WarehouseError and writes nothing. A run id the warehouse already holds
        with another config hash is refused with a ConfigError, wherever its run dir is.
        """
        row = _run_row(start, status="running")
        run_id = start.run_id
        fresh_lock = run_id not in self._locks
        if fresh_lock:
            self._locks[run_id] = runlock.acquire(self._engine, run_id, self.url)
        try:
            self._start_locked(start, row)
        except BaseException:
            if fresh_lock:
                self._release(run_id)
            raise

    def _start_locked(self, start: RunStart, row: dict[str, Any]) -> None:
        with self._transaction(f"starting run {start.run_id}") as conn:
            _refuse_other_config(conn, start, self.url)
            _ensure_experiment(conn, start.experiment)
            new = bulk.excluded(conn, model_info)
            keep_if_missing = ("param_count", "git_sha", "dataset_fingerprint", "hardware")
            assignments: dict[str, Any] = {
                name: new[name] for name in row if name not in ("run_id", "created_at")
            }
            for name in keep_if_missing:
                assignments[name] = func.coalesce(new[name], model_info.c[name])
            assignments.update(status_reason=None, finished_at=None)
            bulk.upsert(conn, model_info, row, update=assignments)

    def log_epoch(self, run_id: str, epoch: EpochRecord) -> None:
        """Upsert one epoch on (run_id, epoch)."""
        self.log_epochs(run_id, [epoch])

    def log_epochs(self, run_id: str, epochs: Sequence[EpochRecord]) -> None:
        """Upsert several epochs at once (a resumed or re-synced run), all or nothing."""
        rows = [{"run_id": run_id, **_epoch_row(e)} for e in epochs]
        self._ensure_lock(run_id)
        with self._transaction(f"logging epochs of run {run_id}") as conn:
            _require_run(conn, run_id)
            bulk.upsert(conn, epoch_stats, rows)

    def log_evaluation(self, run_id: str, evaluation: EvaluationRecord) -> None:
        """Replace the run's evaluation on this split, in one transaction: all of it or none."""
        split = evaluation.split
        self._ensure_lock(run_id)
        with self._transaction(f"logging the {split} evaluation of run {run_id}") as conn:
            _require_run(conn, run_id)
            predictions = evaluation.predictions
            header = {
                "run_id": run_id,
                "split": split,
                "loss": _float(evaluation.loss),
                "accuracy": _float(evaluation.accuracy),
                "expected_calibration_error": _float(evaluation.expected_calibration_error),
                "class_names": list(evaluation.class_names),
                "prediction_count": len(predictions) if predictions is not None else 0,
                "evaluated_at": _now(),
            }
            # the header upsert locks its row: a concurrent writer of the same evaluation waits
            bulk.upsert(conn, evaluations, header)
            for table in (class_metrics, confusion_matrix, calibration_bins, predictions_log):
                where = and_(table.c.run_id == run_id, table.c.split == split)
                conn.execute(delete(table).where(where))
            _write_evaluation_rows(conn, run_id, evaluation)

    def finish_run(self, run_id: str, finish: RunFinish) -> None:
        """Set the terminal status and headline numbers."""
        if finish.status not in TERMINAL_STATUSES:
            raise WarehouseError(
                f"finish_run({run_id}) got status {finish.status!r}; a finished run is one of "
                f"{sorted(str(status) for status in TERMINAL_STATUSES)}"
            )
        values: dict[str, Any] = {
            "status": finish.status,
            "status_reason": _reason(finish.reason),
            "finished_at": finish.finished_at or _now(),
            "best_epoch": finish.best_epoch,
            "pruned_epoch": finish.pruned_epoch,
            "artifact_uri": finish.artifact_uri,
            "param_count": func.coalesce(finish.param_count, model_info.c.param_count),
        }
        for name in HEADLINE_METRICS:
            values[name] = _float(getattr(finish, name))
        try:
            self._ensure_lock(run_id)
            with self._transaction(f"finishing run {run_id}") as conn:
                result = conn.execute(
                    update(model_info).where(model_info.c.run_id == run_id).values(**values)
                )
                if result.rowcount == 0:
                    raise _unknown_run(run_id, self.url)
        finally:
            self._release(run_id)  # the run is over in this process, written or not

    def _ensure_lock(self, run_id: str) -> None:
        """Before a write of a run started here: its lock is still ours (see `runlock.ensure`)."""
        lock = self._locks.get(run_id)
        if lock is not None:
            lock.ensure()

    def _release(self, run_id: str) -> None:
        lock = self._locks.pop(run_id, None)
        if lock is not None:
            lock.release()

    def set_status(self, run_id: str, status: str, reason: str | None = None) -> None:
        """Set a run's status from outside the run (the Job's terminal state, a cancel)."""
        if status not in RUN_STATUSES:
            raise WarehouseError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        values: dict[str, Any] = {"status": status, "status_reason": _reason(reason)}
        if status in TERMINAL_STATUSES:
            values["finished_at"] = func.coalesce(model_info.c.finished_at, _now())
        elif status == "running":
            values["started_at"] = func.coalesce(model_info.c.started_at, _now())
        with self._transaction(f"setting the status of run {run_id}") as conn:
            result = conn.execute(
                update(model_info).where(model_info.c.run_id == run_id).values(**values)
            )
            if result.rowcount == 0:
                raise _unknown_run(run_id, self.url)

    def last_epoch(self, run_id: str) -> int:
        """The highest epoch logged for the run (0 if none), for progress checks; resume itself
        continues from the run's checkpoint (checkpoints.py), not from this."""
        with self._transaction(f"reading the epochs of run {run_id}") as conn:
            query = select(func.max(epoch_stats.c.epoch)).where(epoch_stats.c.run_id == run_id)
            return int(conn.execute(query).scalar_one() or 0)

    # --- reads ----------------------------------------------------------------------------------

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        status: str | None = None,
        model: str | None = None,
        limit: int | None = 50,
    ) -> list[RunSummary]:
        """Runs, newest first, optionally filtered."""
        query = _summary_query()
        if experiment is not None:
            query = query.where(model_info.c.experiment == experiment)
        if status is not None:
            query = query.where(model_info.c.status == status)
        if model is not None:
            query = query.where(model_info.c.model_name == model)
        query = query.order_by(model_info.c.created_at.desc(), model_info.c.run_id).limit(limit)
        with self._transaction("listing runs") as conn:
            return [_summary(row) for row in conn.execute(query).mappings()]

    def get_run(self, run_id: str) -> RunDetail:
        """One run by id or unique id prefix: summary, config, epochs and evaluations."""
        with self._transaction(f"reading run {run_id}") as conn:
            full_id = _resolve(conn, run_id, self.url)
            row = conn.execute(_summary_query().where(model_info.c.run_id == full_id)).mappings()
            summary = _summary(row.one())
            config = conn.execute(
                select(model_info.c.config).where(model_info.c.run_id == full_id)
            ).scalar_one()
            return RunDetail(
                summary=summary,
                config=config,
                epochs=_epochs(conn, full_id),
                evaluations=_evaluations(conn, full_id),
            )

    def compare(self, run_ids: Sequence[str]) -> list[RunSummary]:
        """Several runs (ids or unique prefixes) in the order given."""
        with self._transaction("comparing runs") as conn:
            full_ids = [_resolve(conn, run_id, self.url) for run_id in run_ids]
            query = _summary_query().where(model_info.c.run_id.in_(full_ids))
            by_id = {row["run_id"]: _summary(row) for row in conn.execute(query).mappings()}
        return [by_id[run_id] for run_id in full_ids]

    def best_run(self, experiment: str) -> RunSummary | None:
        """The succeeded run of `experiment` with the best test (else validation) accuracy."""
        score = func.coalesce(model_info.c.test_accuracy, model_info.c.val_accuracy)
        query = (
            _summary_query()
            .where(model_info.c.experiment == experiment, model_info.c.status == "succeeded")
            .order_by(score.is_(None), score.desc(), model_info.c.run_id)
            .limit(1)
        )
        with self._transaction(f"finding the best run of {experiment!r}") as conn:
            row = conn.execute(query).mappings().first()
        return _summary(row) if row is not None else None

    def succeeded_hashes(self, experiment: str) -> set[str]:
        """Config hashes of `experiment` with a succeeded run: a resumed search skips these."""
        query = select(model_info.c.config_hash).where(
            model_info.c.experiment == experiment, model_info.c.status == "succeeded"
        )
        with self._transaction(f"reading succeeded runs of {experiment!r}") as conn:
            return set(conn.execute(query).scalars())

    def epochs(self, run_id: str) -> list[EpochRecord]:
        """The run's epochs in order."""
        with self._transaction(f"reading the epochs of run {run_id}") as conn:
            return _epochs(conn, _resolve(conn, run_id, self.url))

    def predictions(
        self,
        run_id: str,
        *,
        split: str | None = None,
        only_wrong: bool = False,
        limit: int | None = None,
    ) -> list[PredictionRow]:
        """Per-image predictions; with `only_wrong`, the most confident mistakes first."""
        with self._transaction(f"reading the predictions of run {run_id}") as conn:
            full_id = _resolve(conn, run_id, self.url)
            query = select(predictions_log).where(predictions_log.c.run_id == full_id)
            if split is not None:
                query = query.where(predictions_log.c.split == split)
            if only_wrong:
                query = query.where(predictions_log.c.correct.is_(False)).order_by(
                    predictions_log.c.confidence.desc(), predictions_log.c.image_index
                )
            else:
                query = query.order_by(predictions_log.c.split, predictions_log.c.image_index)
            rows = conn.execute(query.limit(limit)).mappings()
            names = [f.name for f in fields(PredictionRow)]
            found = [{name: r[name] for name in names} for r in rows]
            return [PredictionRow(**{**row, "correct": bool(row["correct"])}) for row in found]

    def experiments(self) -> list[ExperimentSummary]:
        """Every experiment with its run counts, newest first."""
        runs = (
            select(
                model_info.c.experiment,
                func.count().label("runs"),
                func.sum(case((model_info.c.status == "succeeded", 1), else_=0)).label("ok"),
            )
            .group_by(model_info.c.experiment)
            .subquery()
        )
        query = (
            select(experiments, runs.c.runs, runs.c.ok)
            .outerjoin(runs, runs.c.experiment == experiments.c.name)
            .order_by(experiments.c.created_at.desc(), experiments.c.name)
        )
        with self._transaction("listing experiments") as conn:
            return [
                ExperimentSummary(
                    name=r["name"],
                    description=r["description"],
                    search_method=r["search_method"],
                    search_parameters=r["search_parameters"],
                    trial_count=r["trial_count"],
                    created_at=_aware(r["created_at"]),  # type: ignore[arg-type]
                    runs=int(r["runs"] or 0),
                    succeeded=int(r["ok"] or 0),
                )
                for r in conn.execute(query).mappings()
            ]

    def read_view(self, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of one reporting view (for `export`)."""
        if name not in VIEW_NAMES:
            raise WarehouseError(f"no reporting view {name!r}; the views are {list(VIEW_NAMES)}")
        with self._transaction(f"reading view {name}") as conn:
            result = conn.execute(text(f"SELECT * FROM {qualified_name(name, self.dialect)}"))
            return list(result.keys()), [tuple(row) for row in result]


# --- helpers ------------------------------------------------------------------------------------


def _reason(reason: str | None) -> str | None:
    """A status reason as stored: often an error's text (helm's stderr, a driver's message),
    which can quote a URL with its password or a signed query, and is shown to every reader."""
    return redact_text(reason) if reason else reason


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _ensure_experiment(conn: Connection, name: str) -> None:
    bulk.upsert(conn, experiments, {"name": name}, update=[])


def _plain(value: Any) -> Any:
    """NumPy scalars (Keras logs hand them over) as the Python numbers drivers bind."""
    return value.item() if isinstance(value, np.generic) else value


def _run_row(start: RunStart, *, status: str) -> dict[str, Any]:
    """A `model_info` row: every RunStart field is a column of the same name."""
    row = {name: _plain(value) for name, value in asdict(start).items()}
    row.update(status=status, started_at=start.started_at or _now())
    return row


def _epoch_row(epoch: EpochRecord) -> dict[str, Any]:
    """An `epoch_stats` row (less its run_id): every EpochRecord field is a column."""
    return {name: _plain(value) for name, value in asdict(epoch).items()}


def _refuse_other_config(conn: Connection, start: RunStart, url: str) -> None:
    """A run id names one config: the warehouse's row decides, not the local run dir."""
    query = select(model_info.c.config_hash, model_info.c.experiment).where(
        model_info.c.run_id == start.run_id
    )
    known = conn.execute(query).first()
    if known is None or known.config_hash == start.config_hash:
        return
    raise ConfigError(
        f"run {start.run_id} already exists in the warehouse {url} with config hash "
        f"{known.config_hash} (experiment {known.experiment!r}); this config hashes to "
        f"{start.config_hash} (experiment {start.experiment!r}): resume that run with its own "
        "config, or use a new --run-id"
    )


def _write_evaluation_rows(conn: Connection, run_id: str, evaluation: EvaluationRecord) -> None:
    split = evaluation.split
    _upsert_records(conn, class_metrics, run_id, split, ClassMetric, evaluation.class_metrics)
    confusion = np.asarray(evaluation.confusion, dtype=np.int64).tolist()
    bulk.bulk_upsert(
        conn,
        confusion_matrix,
        ("run_id", "split", "true_class", "predicted_class", "count"),
        [
            (run_id, split, t, p, int(count))
            for t, row in enumerate(confusion)
            for p, count in enumerate(row)
        ],
    )
    _upsert_records(conn, calibration_bins, run_id, split, CalibrationBin, evaluation.calibration)
    predictions = evaluation.predictions
    if predictions is None or len(predictions) == 0:
        return
    n = len(predictions)
    refs = predictions.image_ref if predictions.image_ref is not None else [None] * n
    if len(refs) != n:
        raise WarehouseError(f"predictions have {n} rows but {len(refs)} image refs")
    columns = zip(
        [run_id] * n,
        [split] * n,
        predictions.image_index.tolist(),
        predictions.true_class.tolist(),
        predictions.predicted_class.tolist(),
        predictions.confidence.astype(float).tolist(),
        predictions.correct.tolist(),
        refs,
        strict=True,
    )
    bulk.bulk_upsert(conn, predictions_log, _PREDICTION_COLUMNS, columns)


def _upsert_records(
    conn: Connection,
    table: Any,
    run_id: str,
    split: str,
    record_type: type[Any],
    records: Sequence[Any],
) -> None:
    """Rows of an evaluation child table whose columns are the record's fields after the key."""
    names = tuple(f.name for f in fields(record_type))
    rows = [(run_id, split, *(_plain(getattr(r, name)) for name in names)) for r in records]
    bulk.bulk_upsert(conn, table, ("run_id", "split", *names), rows)


def _require_run(conn: Connection, run_id: str) -> None:
    found = conn.execute(select(model_info.c.run_id).where(model_info.c.run_id == run_id))
    if found.first() is None:
        raise WarehouseError(
            f"run {run_id} is not registered in the warehouse: start_run must come first"
        )


def _unknown_run(run_id: str, url: str) -> WarehouseError:
    return WarehouseError(
        f"no run {run_id!r} in the warehouse {url}; `cifar-ops runs list` shows the runs"
    )


def _resolve(conn: Connection, run_id: str, url: str) -> str:
    return runids.resolve(conn, run_id, model_info.c.run_id, url)


def _summary_query() -> Select[Any]:
    epochs_logged = (
        select(func.count())
        .where(epoch_stats.c.run_id == model_info.c.run_id)
        .scalar_subquery()
        .label("epochs_logged")
    )
    columns = [c for c in model_info.c if c.name != "config"]
    return select(*columns, epochs_logged)


def _summary(row: RowMapping) -> RunSummary:
    values = dict(row)
    for name in ("created_at", "started_at", "finished_at"):
        values[name] = _aware(values[name])
    return RunSummary(**values)


def _epochs(conn: Connection, run_id: str) -> list[EpochRecord]:
    query = select(epoch_stats).where(epoch_stats.c.run_id == run_id).order_by(epoch_stats.c.epoch)
    return [
        EpochRecord(**{k: v for k, v in row.items() if k != "run_id"})
        for row in conn.execute(query).mappings()
    ]


def _evaluations(conn: Connection, run_id: str) -> list[EvaluationResult]:
    headers = conn.execute(
        select(evaluations).where(evaluations.c.run_id == run_id).order_by(evaluations.c.split)
    ).mappings()
    results = []
    for header in headers.all():
        split = header["split"]
        names = list(header["class_names"])

        def rows(table: Any, order: Any, split: str = split) -> list[RowMapping]:
            query = select(table).where(table.c.run_id == run_id, table.c.split == split)
            return list(conn.execute(query.order_by(*order)).mappings())

        metrics = [
            ClassMetric(**{k: v for k, v in r.items() if k not in ("run_id", "split")})
            for r in rows(class_metrics, [class_metrics.c.class_index])
        ]
        confusion = [[0] * len(names) for _ in names]
        for r in rows(confusion_matrix, [confusion_matrix.c.true_class]):
            if r["true_class"] < len(names) and r["predicted_class"] < len(names):
                confusion[r["true_class"]][r["predicted_class"]] = r["count"]
        bins = [
            CalibrationBin(**{k: v for k, v in r.items() if k not in ("run_id", "split")})
            for r in rows(calibration_bins, [calibration_bins.c.bin_index])
        ]
        results.append(
            EvaluationResult(
                split=split,
                loss=header["loss"],
                accuracy=header["accuracy"],
                expected_calibration_error=header["expected_calibration_error"],
                class_names=names,
                prediction_count=header["prediction_count"],
                evaluated_at=_aware(header["evaluated_at"]),  # type: ignore[arg-type]
                class_metrics=metrics,
                confusion=confusion,
                calibration=bins,
            )
        )
    return results

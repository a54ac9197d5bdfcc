"""Read a report's data from the warehouse reporting views, and nothing else.

Power BI reads the same views, so the HTML report and a dashboard always agree. The views are
`reporting.<name>` on PostgreSQL and `reporting_<name>` on SQLite (`views.qualified_name`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Engine, TableClause, column, table, text
from sqlalchemy.exc import SQLAlchemyError

from cifar_ops.errors import CifarOpsError, WarehouseError
from cifar_ops.report.model import Kpis, ReportData, RunReport, SearchReport
from cifar_ops.warehouse import runids
from cifar_ops.warehouse.engine import driver_reason, masked
from cifar_ops.warehouse.views import qualified_name

MISTAKES_SHOWN = 24  # most confident mistakes per run
DEFAULT_DETAILS = 3  # runs of an experiment shown in detail, best first


class _Views:
    """Parameterised reads of the reporting views through one connection."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.where = masked(engine.url.render_as_string(hide_password=False))

    def read(self, view: str, where: str = "", params: dict[str, Any] | None = None,
             order: str = "", limit: int | None = None) -> pd.DataFrame:  # fmt: skip
        sql = f"SELECT * FROM {qualified_name(view, self.dialect)}"
        if where:
            sql += f" WHERE {where}"
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            with self.engine.connect() as connection:
                return pd.read_sql(text(sql), connection, params=params or {})
        except SQLAlchemyError as exc:
            raise WarehouseError(
                f"reading the reporting view {view} from the warehouse {self.where} failed: "
                f"{driver_reason(exc)}; `cifar-ops db upgrade` creates the views"
            ) from exc

    def resolve(self, run_ids: Sequence[str]) -> list[str]:
        """Full run ids from ids or unique prefixes, looked up in the `run_summary` view."""
        for given in run_ids:
            runids.prefix_of(given)  # a malformed id is refused before any query
        summary = _view("run_summary", self.dialect)
        try:
            with self.engine.connect() as connection:
                return [
                    runids.resolve(connection, given, summary.c.run_id, self.where)
                    for given in run_ids
                ]
        except SQLAlchemyError as exc:
            raise WarehouseError(
                f"reading the reporting view run_summary from the warehouse {self.where} failed: "
                f"{driver_reason(exc)}; `cifar-ops db upgrade` creates the views"
            ) from exc


def _view(name: str, dialect: str) -> TableClause:
    """A reporting view as a selectable with its run_id column (schema-qualified on PostgreSQL)."""
    schema, _, view = qualified_name(name, dialect).rpartition(".")
    return table(view, column("run_id"), schema=schema or None)


def load_report_data(
    engine: Engine,
    *,
    run_ids: Sequence[str] = (),
    experiment: str | None = None,
    details: int | None = None,
    heatmap_axes: tuple[str, str] | None = None,
) -> ReportData:
    """Runs named by id (or unique prefix), or every run of an experiment, with what applies.

    Several runs add a comparison table; an experiment whose runs are search trials adds the
    leaderboard and the heatmap data. `details` caps the runs shown in full (default: every named
    run, or the best `DEFAULT_DETAILS` of an experiment).
    """
    if bool(run_ids) == bool(experiment):
        raise CifarOpsError("give run ids or --experiment (one of the two)")
    views = _Views(engine)
    notes: list[str] = []
    if experiment:
        summaries = _experiment_runs(views, experiment)
        title = f"Experiment {experiment}"
        limit = DEFAULT_DETAILS if details is None else details
    else:
        summaries = _named_runs(views, run_ids)
        title = (
            "Run " + summaries.iloc[0]["run_id"][:8] if len(summaries) == 1 else "Run comparison"
        )
        limit = len(summaries) if details is None else details
    detailed = summaries.head(limit)
    if len(summaries) > len(detailed):
        notes.append(
            f"{len(detailed)} of {len(summaries)} runs shown in detail (best first); name run ids "
            "or pass --details N for more."
        )
    runs = [_run_report(views, row) for row in detailed.to_dict(orient="records")]
    comparison = _comparison(views, summaries) if len(summaries) > 1 else None
    search = _search(views, experiment, heatmap_axes) if experiment else None
    return ReportData(title=title, runs=runs, comparison=comparison, search=search, notes=notes)


# --- choosing runs -------------------------------------------------------------------------------


def _rank(summaries: pd.DataFrame) -> pd.DataFrame:
    """Best first: test accuracy where measured, else validation accuracy; unscored runs last."""
    score = summaries["test_accuracy"].fillna(summaries["val_accuracy"])
    order = score.sort_values(ascending=False, na_position="last", kind="stable").index
    return summaries.loc[order].reset_index(drop=True)


def _experiment_runs(views: _Views, experiment: str) -> pd.DataFrame:
    summaries = views.read("run_summary", "experiment = :e", {"e": experiment}, order="run_id")
    if summaries.empty:
        raise WarehouseError(
            f"experiment {experiment!r} has no runs in the warehouse {views.where}; "
            "`cifar-ops runs list` shows the experiments there are"
        )
    return _rank(summaries)


def _named_runs(views: _Views, run_ids: Sequence[str]) -> pd.DataFrame:
    full_ids = views.resolve(run_ids)
    rows = [views.read("run_summary", "run_id = :r", {"r": run_id}) for run_id in full_ids]
    return pd.concat(rows, ignore_index=True).drop_duplicates("run_id", ignore_index=True)


# --- one run -------------------------------------------------------------------------------------


def _run_report(views: _Views, summary: dict[str, Any]) -> RunReport:
    run_id = summary["run_id"]
    where = {"r": run_id}
    epochs = views.read("epoch_curves", "run_id = :r", where, order="epoch")
    class_metrics = views.read("class_metrics", "run_id = :r", where, order="split, class_index")
    split = _evaluated_split(class_metrics)
    by_split = "run_id = :r AND split = :s"
    at = {"r": run_id, "s": split}
    class_metrics = class_metrics[class_metrics["split"] == split].reset_index(drop=True)
    confusion = views.read("confusion", by_split, at, order="true_class, predicted_class")
    calibration = views.read("calibration", by_split, at, order="bin_index")
    mistakes = views.read(
        "misclassifications", by_split, at, order="confidence DESC, image_index",
        limit=MISTAKES_SHOWN,
    )  # fmt: skip
    return RunReport(
        run_id=run_id,
        experiment=summary["experiment"],
        model_name=summary["model_name"],
        status=summary["status"],
        kpis=_kpis(summary, epochs),
        summary=summary,
        epochs=epochs[["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy"]],
        class_metrics=class_metrics[
            ["class_index", "class_name", "precision", "recall", "f1", "support"]
        ],
        confusion=_confusion_square(confusion, class_metrics),
        calibration=calibration[
            ["bin_index", "lower", "upper", "count", "mean_confidence", "accuracy"]
        ],
        mistakes=mistakes[
            ["image_index", "true_class_name", "predicted_class_name", "confidence", "image_ref"]
        ],
    )


def _evaluated_split(class_metrics: pd.DataFrame) -> str:
    """The held-out test split when the run measured it, else the one it did measure."""
    splits = list(dict.fromkeys(class_metrics["split"]))
    return "test" if "test" in splits or not splits else splits[0]


def _kpis(summary: dict[str, Any], epochs: pd.DataFrame) -> Kpis:
    """Best accuracy is the validation accuracy of the run's best epoch (the weights it kept)."""
    best_epoch = _int(summary.get("best_epoch"))
    best_accuracy = None
    curve = epochs.dropna(subset=["val_accuracy"])
    if best_epoch is not None:
        at_best = curve.loc[curve["epoch"] == best_epoch, "val_accuracy"]
        best_accuracy = _float(at_best.iloc[0]) if len(at_best) else None
    elif len(curve):
        best_row = curve.loc[curve["val_accuracy"].idxmax()]
        best_epoch, best_accuracy = _int(best_row["epoch"]), _float(best_row["val_accuracy"])
    return Kpis(
        best_accuracy=best_accuracy,
        best_epoch=best_epoch,
        test_accuracy=_float(summary.get("test_accuracy")),
        overfitting_gap=_float(summary.get("overfitting_gap")),
        param_count=_int(summary.get("param_count")),
        training_seconds=_float(summary.get("duration_seconds")),
    )


def _confusion_square(confusion: pd.DataFrame, class_metrics: pd.DataFrame) -> pd.DataFrame:
    """Counts as a square frame over every class (absent cells are zero), labelled by name."""
    names = dict(zip(class_metrics["class_index"], class_metrics["class_name"], strict=True))
    indices = sorted(set(names) | set(confusion["true_class"]) | set(confusion["predicted_class"]))
    square = (
        confusion.pivot_table(
            index="true_class", columns="predicted_class", values="count", aggfunc="sum"
        )
        .reindex(index=indices, columns=indices)
        .fillna(0)
        .astype(int)
    )
    labels = [str(names.get(i, i)) for i in indices]
    square.index, square.columns = labels, labels
    return square


# --- several runs, and searches ------------------------------------------------------------------


def _comparison(views: _Views, summaries: pd.DataFrame) -> pd.DataFrame:
    """The comparison table (test accuracy, loss, overfitting gap, parameters), best run first."""
    rows = []
    for summary in summaries.to_dict(orient="records"):
        epochs = views.read("epoch_curves", "run_id = :r", {"r": summary["run_id"]}, order="epoch")
        kpis = _kpis(summary, epochs)
        rows.append(
            {
                "run_id": summary["run_id"],
                "label": f"{summary['model_name']} {summary['run_id'][:6]}",
                "model_name": summary["model_name"],
                "test_accuracy": _float(summary["test_accuracy"]),
                "test_loss": _float(summary["test_loss"]),
                "overfitting_gap": kpis.overfitting_gap,
                "param_count": kpis.param_count,
                "best_accuracy": kpis.best_accuracy,
                "training_seconds": kpis.training_seconds,
            }
        )
    return pd.DataFrame(rows)


def _search(
    views: _Views, experiment: str, heatmap_axes: tuple[str, str] | None
) -> SearchReport | None:
    board = views.read(
        "search_leaderboard", "experiment = :e", {"e": experiment}, order="rank, trial_index"
    )
    if board.empty:
        return None
    params = [json.loads(p) if isinstance(p, str) else (p or {}) for p in board["trial_params"]]
    keys = list(dict.fromkeys(k for point in params for k in point))
    columns = {k: [point.get(k) for point in params] for k in keys}
    distinct = {k: len({json.dumps(v, sort_keys=True) for v in columns[k]}) for k in keys}
    keys.sort(key=lambda k: -distinct[k])  # stable: ties keep the configured order
    leaderboard = pd.concat(
        [
            board[["rank", "run_id", "trial_index", "model_name", "status"]],
            pd.DataFrame({k: pd.Series(columns[k], dtype=object) for k in keys}),
            board[["val_accuracy", "test_accuracy", "overfitting_gap", "duration_seconds"]],
        ],
        axis=1,
    )
    varying = [k for k in keys if distinct[k] > 1]
    axes = _heatmap_axes(keys, varying, heatmap_axes)
    curves = views.read("epoch_curves", "experiment = :e", {"e": experiment}, order="run_id, epoch")
    curves = curves[curves["trial_index"].notna()]
    finished = board[board["status"] == "succeeded"]["epochs_used"]
    full = int(finished.max()) * len(board) if len(finished) else None
    return SearchReport(
        leaderboard=leaderboard,
        parameters=keys,
        varying=varying,
        heatmap_axes=axes,
        curves=curves[["run_id", "trial_index", "status", "epoch", "val_accuracy"]],
        epochs_spent=int(board["epochs_used"].sum()),
        epochs_full=full,
        importances=_importances(params, board, varying),
    )


def _importances(
    params: list[dict[str, Any]], board: pd.DataFrame, varying: list[str]
) -> dict[str, float]:
    """Optuna's fANOVA importances of the varying parameters for validation accuracy, over the
    finished trials (from the warehouse alone, so a reader without the study's tables gets them
    too); empty with fewer than three finished trials or nothing varying."""
    rows = [
        (point, float(value))
        for point, value, status in zip(params, board["val_accuracy"], board["status"], strict=True)
        if status == "succeeded" and value is not None and not pd.isna(value)
    ]
    if len(rows) < 3 or not varying or len({value for _, value in rows}) < 2:
        return {}  # nothing to explain
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    choices = {k: sorted({json.dumps(p.get(k), sort_keys=True) for p, _ in rows}) for k in varying}
    distributions: dict[str, BaseDistribution] = {
        k: CategoricalDistribution(v) for k, v in choices.items()
    }
    study = optuna.create_study(direction="maximize")
    for point, value in rows:
        encoded = {k: json.dumps(point.get(k), sort_keys=True) for k in varying}
        study.add_trial(
            optuna.trial.create_trial(params=encoded, distributions=distributions, value=value)
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except RuntimeError:  # fANOVA's trees found no variance to split
        return {}
    return {key: float(share) for key, share in found.items()}


def _heatmap_axes(
    keys: list[str], varying: list[str], wanted: tuple[str, str] | None
) -> tuple[str, str] | None:
    if wanted is not None:
        unknown = [k for k in wanted if k not in keys]
        if unknown or wanted[0] == wanted[1]:
            raise CifarOpsError(
                f"heatmap axes {','.join(wanted)!r}: give two different searched parameters "
                f"from: {', '.join(keys) or '(none)'}"
            )
        return wanted
    return (varying[0], varying[1]) if len(varying) >= 2 else None


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)

"""`run`, `evaluate`, `predict`: train and use models on this machine.

Each parses, calls one package function (local executor, inference), renders with rich or `--json`;
TensorFlow and the warehouse are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table
from rich.text import Text

from cifar_ops.commands.output import (
    CONFIG_OPTION,
    JSON_OPTION,
    SET_OPTION,
    console,
    err_console,
    print_json,
)
from cifar_ops.commands.runs_cmds import STATUS_STYLES
from cifar_ops.errors import ConfigError, Preempted
from cifar_ops.formatting import pct
from cifar_ops.redaction import redact_url
from cifar_ops.vocabulary import HEADLINE_METRICS, RunStatus

# a run that ended with a result: succeeded, or pruned by its search (exit 0)
_RESULTS = frozenset({RunStatus.SUCCEEDED, RunStatus.PRUNED})

RUN_ID = re.compile(r"[0-9a-f]{32}")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(evaluate)
    app.command()(predict)


def run(
    config: Path = CONFIG_OPTION,
    overrides: list[str] = SET_OPTION,
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Sets data.dir (a path or s3://bucket/prefix/)."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Resume or name this run."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve /metrics."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="Search trials at once."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a config here (a search runs its trials) and log it to the warehouse."""
    from cifar_ops.config import SearchConfig, load_config

    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise typer.BadParameter(
            f"{run_id!r} is not a run id: 32 lowercase hex digits (a uuid4 hex), e.g. "
            f"{uuid.uuid4().hex}",
            param_hint="--run-id",
        )

    extra = list(overrides or [])
    if data_dir is not None:
        extra.append(f"data.dir={json.dumps(str(data_dir))}")
    if metrics_port is not None:
        extra.append(f"monitoring.port={metrics_port}")
    loaded = load_config(config, extra)
    if isinstance(loaded, SearchConfig):
        if run_id is not None:
            raise ConfigError(
                "--run-id names one run; a search gives each trial its own", path=str(config)
            )
        if metrics_port is not None and parallel > 1:
            raise ConfigError(
                "--metrics-port serves one run at a time; drop it or --parallel", path=str(config)
            )
    from cifar_ops.executors.local import run_locally
    from cifar_ops.progress import RichProgress

    if not isinstance(loaded, SearchConfig):
        run_id = run_id or uuid.uuid4().hex  # known here, so Ctrl-C can say how to resume
    progress = [] if as_json else [RichProgress(err_console)]
    try:
        outcomes = run_locally(loaded, run_id=run_id, parallel=parallel, callbacks=progress)
    except KeyboardInterrupt as exc:
        preempted = isinstance(exc, Preempted)  # SIGTERM: 143, as a process killed by it
        if run_id is not None:
            what = "preempted (SIGTERM)" if preempted else "interrupted"
            err_console.print(f"{what}: resume with --run-id {run_id}", highlight=False)
        raise typer.Exit(143 if preempted else 130) from None
    finally:
        for callback in progress:
            callback.close()
    payloads = [_outcome_json(outcome) for outcome in outcomes]
    if as_json:
        print_json(payloads if isinstance(loaded, SearchConfig) else payloads[0])
    else:
        _print_outcomes(payloads, skipped=_skipped(loaded, outcomes))
    if any(outcome.status not in _RESULTS for outcome in outcomes):
        raise typer.Exit(1)


MODEL_HELP = (
    "A .keras file, an object URL (s3://.../model.keras), a run id (or prefix), or a registered "
    "model: models:/NAME@ALIAS or models:/NAME/VERSION."
)


def evaluate(
    model: str = typer.Argument(..., help=MODEL_HELP),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Image folder or CIFAR dir (a path or s3://bucket/prefix/)."
    ),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Evaluate a saved model on a dataset: accuracy, loss and per-class metrics."""
    from cifar_ops.inference import evaluate_saved_model, load_saved_model
    from cifar_ops.storage.models import local_model

    saved = load_saved_model(local_model(model))
    record = evaluate_saved_model(saved, data_dir, split)
    model = redact_url(model)
    payload = {
        "model": model,
        "split": record.split,
        "images": int(record.confusion.sum()),
        "accuracy": record.accuracy,
        "loss": record.loss,
        "expected_calibration_error": record.expected_calibration_error,
        "classes": [
            {
                "name": m.class_name,
                "precision": m.precision,
                "recall": m.recall,
                "f1": m.f1,
                "support": m.support,
                "accuracy": m.accuracy,
            }
            for m in record.class_metrics
        ],
        "confusion_matrix": record.confusion.tolist(),
    }
    if as_json:
        print_json(payload)
        return
    console.print(
        Text.assemble(
            (str(model), "bold"),
            f" on {payload['images']} {split} images: accuracy {record.accuracy:.2%}, "
            f"loss {record.loss:.4f}, ECE {record.expected_calibration_error:.4f}",
        ),
        soft_wrap=True,
    )
    table = Table("class", "precision", "recall", "f1", "support")
    for m in record.class_metrics:
        table.add_row(
            m.class_name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support)
        )
    console.print(table)


def predict(
    model: str = typer.Argument(..., help=MODEL_HELP),
    images: list[Path] = typer.Argument(..., help="Image files of any size and mode."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Class probabilities for image files, resized to the model's input."""
    from cifar_ops.inference import load_saved_model, predict_files
    from cifar_ops.storage.models import local_model

    saved = load_saved_model(local_model(model))
    predictions = predict_files(saved, list(images))
    if as_json:
        print_json([p.__dict__ for p in predictions])
        return
    for p in predictions:
        console.print(
            Text.assemble(
                (p.path, "bold"),
                f" ({p.width}x{p.height} {p.mode}): ",
                (p.predicted, "green"),
                f" {p.confidence:.1%}",
            ),
            soft_wrap=True,
        )
        table = Table("class", "probability")
        ranked = sorted(p.probabilities.items(), key=lambda item: -item[1])
        for name, probability in ranked[:5]:
            table.add_row(name, f"{probability:.2%}")
        console.print(table)


def _outcome_json(outcome: Any) -> dict[str, Any]:
    finish = outcome.finish
    metrics = {key: getattr(finish, key) for key in HEADLINE_METRICS}
    return {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "trial_index": outcome.trial_index,
        "reason": finish.reason,
        "best_epoch": finish.best_epoch,
        "param_count": finish.param_count,
        "metrics": metrics,
        "model_path": str(outcome.model_path) if outcome.model_path else None,
    }


def _skipped(loaded: Any, outcomes: list[Any]) -> int:
    trials = getattr(loaded, "trials", None)
    return len(trials) - len(outcomes) if trials is not None else 0


def _print_outcomes(payloads: list[dict[str, Any]], *, skipped: int) -> None:
    table = Table(Column("run", no_wrap=True, min_width=8), "trial")
    table.add_column("status", no_wrap=True)
    for name in ("best epoch", "val acc", "test acc", "test loss", "gap"):
        table.add_column(name)
    for p in payloads:
        m = p["metrics"]
        table.add_row(
            p["run_id"][:8],
            "-" if p["trial_index"] is None else str(p["trial_index"]),
            Text(p["status"], style=STATUS_STYLES.get(RunStatus(p["status"]), "")),
            "-" if p["best_epoch"] is None else str(p["best_epoch"]),
            pct(m["val_accuracy"]),
            pct(m["test_accuracy"]),
            "-" if m["test_loss"] is None else f"{m['test_loss']:.4f}",
            pct(m["overfitting_gap"]),
        )
    console.print(table)
    for p in payloads:
        console.print(f"{p['run_id']}: {p['model_path'] or p['reason']}", highlight=False)
    if skipped:
        console.print(
            f"{skipped} trial(s) skipped: their config already succeeded in this experiment"
        )

"""`runs list|show|compare`: read the warehouse, print rich tables or `--json`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.table import Column
from rich.text import Text

from cifar_ops.commands.output import JSON_OPTION, console, print_json
from cifar_ops.formatting import pct
from cifar_ops.vocabulary import RunStatus

app = typer.Typer(help="List, show and compare logged runs.", no_args_is_help=True)

#: The rich style of each status in `runs list`; keyed by the enum, so a new status needs one.
STATUS_STYLES: dict[RunStatus, str] = {
    RunStatus.QUEUED: "dim",
    RunStatus.RUNNING: "cyan",
    RunStatus.SUCCEEDED: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "yellow",
    RunStatus.PREEMPTED: "magenta",
    RunStatus.PRUNED: "blue",
}


@app.command("list")
def list_runs(
    experiment: str | None = typer.Option(None, "--experiment", "-e"),
    status: RunStatus | None = typer.Option(None, "--status", help="Only runs in this status."),
    model: str | None = typer.Option(None, "--model"),
    limit: int = typer.Option(50, "--limit", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Runs, newest first, with their headline numbers."""
    from rich.table import Table

    from cifar_ops.warehouse import open_store

    with open_store() as store:
        runs = store.list_runs(experiment=experiment, status=status, model=model, limit=limit)
    if as_json:
        print_json([_summary_json(run) for run in runs])
        return
    if not runs:
        console.print("no runs match")
        return
    table = Table(_run_column(), "experiment", "trial", "model", "status", "epochs", "val acc")
    for name in ("test acc", "gap", "started", "seconds"):
        table.add_column(name)
    for run in runs:
        table.add_row(
            run.run_id[:8],
            run.experiment,
            _text(run.trial_index),
            run.model_name,
            _status(run.status),
            str(run.epochs_logged),
            pct(run.val_accuracy),
            pct(run.test_accuracy),
            pct(run.overfitting_gap),
            run.started_at.strftime("%Y-%m-%d %H:%M") if run.started_at else "-",
            _num(run.duration_seconds, 0),
        )
    console.print(table)


@app.command()
def show(
    run_id: str = typer.Argument(..., help="Run id or unique prefix."), as_json: bool = JSON_OPTION
) -> None:
    """One run: config, epochs and evaluation."""
    from rich.table import Table

    from cifar_ops.warehouse import open_store

    with open_store() as store:
        detail = store.get_run(run_id)
    if as_json:
        payload = asdict(detail)
        payload["summary"] = _summary_json(detail.summary)
        print_json(payload)
        return
    run = detail.summary
    facts = Table.grid(padding=(0, 2))
    for label, value in [
        ("run", run.run_id),
        (
            "experiment",
            run.experiment + (f" (trial {run.trial_index})" if run.trial_index is not None else ""),
        ),
        ("model", f"{run.model_name} ({_text(run.param_count)} params)"),
        ("status", run.status + (f": {run.status_reason}" if run.status_reason else "")),
        ("executor", run.executor + (f" job {run.job_name}" if run.job_name else "")),
        ("config hash", run.config_hash),
        ("started / finished", f"{_text(run.started_at)} / {_text(run.finished_at)}"),
        ("best epoch", _text(run.best_epoch)),
        (
            "accuracy train/val/test",
            " / ".join(pct(a) for a in (run.train_accuracy, run.val_accuracy, run.test_accuracy)),
        ),
        ("overfitting gap", pct(run.overfitting_gap)),
        ("artifact", _text(run.artifact_uri)),
    ]:
        facts.add_row(Text(label, style="bold"), str(value))
    console.print(facts)
    if detail.epochs:
        epochs = Table(
            "epoch", "phase", "loss", "acc", "val loss", "val acc", "lr", "s", title="epochs"
        )
        for e in detail.epochs:
            lr = "-" if e.learning_rate is None else f"{e.learning_rate:.3g}"
            epochs.add_row(
                str(e.epoch), e.phase, _num(e.loss), pct(e.accuracy), _num(e.val_loss),
                pct(e.val_accuracy), lr, _num(e.seconds, 1),
            )  # fmt: skip
        console.print(epochs)
    for evaluation in detail.evaluations:
        title = (
            f"{evaluation.split}: accuracy {pct(evaluation.accuracy)}, loss "
            f"{_num(evaluation.loss)}, ECE {_num(evaluation.expected_calibration_error)}"
        )
        classes = Table("class", "precision", "recall", "f1", "support", title=title)
        for m in evaluation.class_metrics:
            classes.add_row(
                m.class_name, pct(m.precision), pct(m.recall), pct(m.f1), str(m.support)
            )
        console.print(classes)


@app.command()
def compare(
    run_ids: list[str] = typer.Argument(..., help="Run ids or unique prefixes."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Several runs side by side: test accuracy, loss, overfitting gap, parameters."""
    from rich.table import Table

    from cifar_ops.warehouse import open_store

    with open_store() as store:
        runs = store.compare(run_ids)
    if as_json:
        print_json([_summary_json(run) for run in runs])
        return
    table = Table(_run_column(), "model", "params", "status", "best epoch", "train acc", "val acc")
    for name in ("test acc", "gap", "seconds"):
        table.add_column(name)
    best = max((r.test_accuracy for r in runs if r.test_accuracy is not None), default=None)
    for run in runs:
        test = pct(run.test_accuracy)
        table.add_row(
            run.run_id[:8],
            run.model_name,
            _text(run.param_count),
            run.status,
            _text(run.best_epoch),
            pct(run.train_accuracy),
            pct(run.val_accuracy),
            Text(test, style="bold green" if run.test_accuracy == best and best else ""),
            pct(run.overfitting_gap),
            _num(run.duration_seconds, 0),
        )
    console.print(table)


def _run_column() -> Column:
    """The 8-digit prefix `show` accepts, never wrapped (a fresh Column: rich's hold cells)."""
    return Column("run", no_wrap=True, min_width=8)


def _summary_json(run: Any) -> dict[str, Any]:
    return {**asdict(run), "duration_seconds": run.duration_seconds}


def _status(status: str) -> Text:
    """The status in its colour (an unknown one, from a newer schema, plain)."""
    try:
        style = STATUS_STYLES[RunStatus(status)]
    except ValueError:
        return Text(status)
    return Text(status, style=style)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

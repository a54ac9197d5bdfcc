"""`score` (a folder or bucket prefix, in batches, into the warehouse and files) and `serve` (an
upload page and a JSON endpoint for one model)."""

from __future__ import annotations

import typer
from rich.text import Text

from cifar_ops.commands.output import JSON_OPTION, console, err_console, print_json
from cifar_ops.commands.training_cmds import MODEL_HELP
from cifar_ops.redaction import redact_url


def register(app: typer.Typer) -> None:
    app.command()(score)
    app.command()(serve)


def score(
    model: str = typer.Argument(..., help=MODEL_HELP),
    data_dir: str = typer.Option(
        ...,
        "--data-dir",
        help="Folder or bucket prefix (s3://...) of images, searched recursively.",
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=8192),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Classes kept per image, best first."),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder or prefix for scores.csv and scores.parquet "
        "(default: <artifacts>/scores/<scoring id>).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score every image under --data-dir into the warehouse; re-running resumes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cifar_ops.scoring.run import ScoringRequest, require_readable, run_scoring

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
        transient=True,
    )
    task = progress.add_task("scoring", total=None)
    with progress:
        result, files = run_scoring(
            ScoringRequest(model, data_dir, output, batch_size, top_k),
            on_total=lambda total: progress.update(task, total=total),
            on_batch=lambda n: progress.advance(task, n),
        )
    payload = {
        "scoring_id": result.scoring_id,
        "model": redact_url(model),
        "data_dir": redact_url(data_dir),
        "images": result.images,
        "scored": result.scored,
        "already_scored": result.already_scored,
        "unreadable": [{"path": p, "reason": r} for p, r in result.unreadable],
        "seconds": round(result.seconds, 3),
        "images_per_second": result.images_per_second,
        "files": [redact_url(f) for f in files],
    }
    if as_json:
        print_json(payload)
    else:
        rate = result.images_per_second
        console.print(
            Text.assemble(
                (f"scoring {result.scoring_id}", "bold"),
                f": {result.scored} images scored"
                + (f" at {rate:.0f} images/s" if rate else "")
                + f", {result.already_scored} already scored, {len(result.unreadable)} unreadable",
            ),
            soft_wrap=True,
        )
        for name in files:
            console.print(f"  {redact_url(name)}", highlight=False, soft_wrap=True)
    require_readable(result, data_dir)


def serve(
    model: str = typer.Argument(..., help=MODEL_HELP),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="0 picks a free port."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (0.0.0.0 for every interface)."
    ),
    max_upload_mb: float = typer.Option(
        10.0, "--max-upload-mb", min=0.01, help="Largest upload accepted."
    ),
) -> None:
    """Serve an upload page, POST /predict (JSON) and /health for one model."""
    from cifar_ops.scoring.run import load_model
    from cifar_ops.serving.app import serve_forever

    saved, _ = load_model(model)
    serve_forever(
        saved,  # type: ignore[arg-type]
        host=host,
        port=port,
        max_bytes=int(max_upload_mb * 1024 * 1024),
        model_ref=redact_url(model),
        announce=lambda url: err_console.print(
            f"serving {redact_url(model)} at {url}", soft_wrap=True, highlight=False
        ),
    )

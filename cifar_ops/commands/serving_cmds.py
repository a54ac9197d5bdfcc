"""`score` (a folder or bucket prefix, in batches, into the warehouse and files) and `serve` (an
upload page and a JSON endpoint for one model)."""

from __future__ import annotations

import typer
from rich.text import Text

from cifar_ops.commands.output import JSON_OPTION, console, err_console, print_json
from cifar_ops.commands.training_cmds import MODEL_HELP
from cifar_ops.errors import DataError
from cifar_ops.redaction import redact_url

_SHOWN_UNREADABLE = 5


def register(app: typer.Typer) -> None:
    app.command()(score)
    app.command()(serve)


def load_model(reference: str) -> tuple[object, tuple[str, int] | None]:
    """The loaded model of any model reference, and its (name, version) when registered."""
    from cifar_ops.inference import load_saved_model
    from cifar_ops.storage.models import MODELS_SCHEME, local_model

    registered = None
    location = reference
    if reference.startswith(MODELS_SCHEME):
        from cifar_ops.warehouse.registry import resolve_reference

        version = resolve_reference(reference)
        registered, location = (version.name, version.version), version.model_uri
    return load_saved_model(local_model(location)), registered


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

    from cifar_ops.scoring import open_source, score_images
    from cifar_ops.scoring.output import default_location, write_files
    from cifar_ops.warehouse import open_store, scores

    saved, registered = load_model(model)
    source = open_source(data_dir)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
        transient=True,
    )
    with open_store() as store, progress:
        task = progress.add_task("scoring", total=len(source.paths))
        result = score_images(
            saved,  # type: ignore[arg-type]
            source,
            store,
            model_ref=model,
            registered=registered,
            batch_size=batch_size,
            top_k=top_k,
            on_batch=lambda n: progress.advance(task, n),
        )
        location = output or default_location(result.scoring_id)
        files = write_files(*scores.rows(store, result.scoring_id), location)
        scores.finish(
            store,
            result.scoring_id,
            images_per_second=result.images_per_second,
            output_uri=redact_url(location),
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
        for name in payload["files"]:
            console.print(f"  {name}", highlight=False, soft_wrap=True)
    if result.unreadable:
        shown = "; ".join(f"{p}: {r}" for p, r in result.unreadable[:_SHOWN_UNREADABLE])
        more = len(result.unreadable) - _SHOWN_UNREADABLE
        raise DataError(
            f"{len(result.unreadable)} image(s) under {redact_url(data_dir)} could not be read "
            f"and were not scored ({shown}{f'; and {more} more' if more > 0 else ''}); "
            "replace or delete them and run again to score the rest"
        )


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

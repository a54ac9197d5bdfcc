"""`pull`: copy a run's model files (wherever the run kept them) to a local directory."""

from __future__ import annotations

from pathlib import Path

import typer

from cifar_ops.commands.output import JSON_OPTION, console, print_json


def register(app: typer.Typer) -> None:
    app.command()(pull)


def pull(
    run: str = typer.Argument(
        ..., help="Run id or unique prefix, or models:/NAME@ALIAS or models:/NAME/VERSION."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Directory to write into (default: ./<run id>)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fetch a run's model.keras, best.keras, classes.json and config.json."""
    from cifar_ops.redaction import redact_url
    from cifar_ops.storage.models import pull as pull_files
    from cifar_ops.storage.models import run_artifact

    run_id, location = run_artifact(run)
    files = pull_files(location, output or Path(run_id))
    if as_json:
        print_json(
            {"run_id": run_id, "source": redact_url(location), "files": [str(f) for f in files]}
        )
        return
    console.print(f"{run_id}: {len(files)} files from {redact_url(location)}", highlight=False)
    for path in files:
        console.print(f"  {path}", highlight=False, soft_wrap=True)

"""`models register|alias|list|show`: the model registry in the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import typer
from rich.text import Text

from cifar_ops.commands.output import JSON_OPTION, console, print_json
from cifar_ops.errors import UsageError
from cifar_ops.formatting import pct
from cifar_ops.redaction import redact_url

app = typer.Typer(
    help="Register runs' models under a name, move aliases, list versions.", no_args_is_help=True
)


@app.command()
def register(
    run: str | None = typer.Argument(None, help="Run id or unique prefix (or use --best)."),
    name: str = typer.Option(..., "--name", help="Model name, e.g. cifar-resnet."),
    alias: str | None = typer.Option(None, "--alias", help="Point this alias at the new version."),
    best: str | None = typer.Option(
        None, "--best", help="Register the best run of this experiment (test accuracy, then loss)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record a succeeded run's model as the next version of NAME."""
    if (run is None) == (best is None):
        raise UsageError("give either a RUN or --best EXPERIMENT (one of them)")
    with _registry() as registry:
        chosen = registry.best_run(best) if best is not None else run
        version = registry.register(str(chosen), name, alias=alias)
    _print_version(version, as_json, verb="registered")


@app.command("alias")
def set_alias(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Version number."),
    alias: str = typer.Argument(..., help="Alias to point at it, e.g. champion."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Point ALIAS of NAME at VERSION (moved from the version it named, in one statement)."""
    with _registry() as registry:
        found = registry.set_alias(name, version, alias)
    _print_version(found, as_json, verb=f"{alias} ->")


@app.command("list")
def list_models(
    name: str | None = typer.Argument(None, help="Only this model's versions."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Registered versions, by model name, newest first."""
    from rich.table import Table

    with _registry() as registry:
        versions = registry.versions(name)
    if as_json:
        print_json([_json(v) for v in versions])
        return
    if not versions:
        console.print("no registered models")
        return
    table = Table("model", "version", "aliases", "run", "test acc", "registered by", "at")
    for v in versions:
        table.add_row(
            v.name,
            str(v.version),
            ", ".join(v.aliases) or "-",
            v.run_id[:8],
            pct(v.test_accuracy),
            v.registered_by,
            v.registered_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command()
def show(
    reference: str = typer.Argument(
        ..., help="NAME (latest version), models:/NAME/VERSION or models:/NAME@ALIAS."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """One version: its run, model URI, config hash, data fingerprint and test numbers."""
    from cifar_ops.warehouse.registry import is_reference

    with _registry() as registry:
        found = registry.resolve(reference) if is_reference(reference) else registry.get(reference)
    if as_json:
        print_json(_json(found))
        return
    for key, value in _json(found).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        console.print(Text.assemble((f"{key}: ", "bold"), str(shown)), soft_wrap=True)


@contextmanager
def _registry() -> Iterator[Any]:
    """The registry on the environment's warehouse, closed on exit."""
    from cifar_ops.warehouse import open_store
    from cifar_ops.warehouse.registry import Registry

    with open_store() as store:
        yield Registry(store)


def _json(version: Any) -> dict[str, Any]:
    payload = asdict(version)
    payload["model_uri"] = redact_url(version.model_uri)
    payload["aliases"] = list(version.aliases)
    payload["reference"] = version.reference
    return payload


def _print_version(version: Any, as_json: bool, *, verb: str) -> None:
    if as_json:
        print_json(_json(version))
        return
    aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
    console.print(
        Text.assemble(
            f"{verb} ",
            (version.reference, "bold"),
            f"{aliases}: run {version.run_id}, test accuracy {pct(version.test_accuracy)}",
        ),
        soft_wrap=True,
    )

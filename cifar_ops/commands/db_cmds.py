"""`db upgrade|current|history`: the warehouse schema under Alembic."""

from __future__ import annotations

import typer

from cifar_ops.commands.output import JSON_OPTION, console, print_json

app = typer.Typer(help="Warehouse schema migrations (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Apply migrations up to REVISION (default head) to CIFAR_OPS_DATABASE_URL, then create or
    upgrade the tables of the searches' Optuna studies beside it."""
    from cifar_ops import settings
    from cifar_ops.warehouse.migrate import upgrade_database

    state = upgrade_database(revision=revision)
    studies = None
    if state.up_to_date:  # the `optuna` schema exists from revision 0003 on
        from cifar_ops.search.storage import create_storage

        studies = create_storage(settings.database_url())
    if as_json:
        print_json(
            {"url": state.url, "current": state.current, "head": state.head, "studies": studies}
        )
        return
    console.print(f"{state.url}: at revision {state.current} (head {state.head})")
    if studies:
        console.print(f"search studies (Optuna): {studies}")


@app.command()
def current(as_json: bool = JSON_OPTION) -> None:
    """The warehouse's current revision and whether it is at head."""
    from cifar_ops.warehouse.migrate import database_state

    state = database_state()
    if as_json:
        payload = {"url": state.url, "current": state.current, "head": state.head}
        print_json({**payload, "up_to_date": state.up_to_date})
        return
    where = "up to date" if state.up_to_date else "behind head: run `cifar-ops db upgrade`"
    console.print(f"{state.url}: revision {state.current or 'none'}, head {state.head} ({where})")


@app.command()
def history(as_json: bool = JSON_OPTION) -> None:
    """All migrations, newest first."""
    from dataclasses import asdict

    from rich.table import Table

    from cifar_ops.warehouse.migrate import history as revisions

    found = revisions()
    if as_json:
        print_json([asdict(r) for r in found])
        return
    table = Table("revision", "down revision", "message")
    for rev in found:
        label = f"{rev.revision} (head)" if rev.is_head else rev.revision
        table.add_row(label, rev.down_revision or "-", rev.message)
    console.print(table)

"""`db upgrade|current|history`: the warehouse schema under Alembic (issue #4 fills the bodies)."""

from __future__ import annotations

import typer

from cifar_ops.errors import CifarOpsError

app = typer.Typer(help="Warehouse schema migrations (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default head)."""
    raise CifarOpsError("`cifar-ops db upgrade` is not built yet (issue #4)")


@app.command()
def current() -> None:
    """The warehouse's current revision."""
    raise CifarOpsError("`cifar-ops db current` is not built yet (issue #4)")


@app.command()
def history() -> None:
    """All migrations, newest first."""
    raise CifarOpsError("`cifar-ops db history` is not built yet (issue #4)")

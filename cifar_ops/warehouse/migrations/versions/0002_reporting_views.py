"""Reporting views for Power BI, and the read-only role that may read them and nothing else.

PostgreSQL: views in the `reporting` schema and `cifar_ops_reader` (NOLOGIN, created once per
cluster) with SELECT on them. SQLite: the same views as `reporting_<name>`, no roles.
The view SQL comes from cifar_ops.warehouse.views; changing a view needs a new migration that
drops and re-creates them (and grants again).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cifar_ops.warehouse import views

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in views.create_statements(dialect):
        op.execute(statement)
    if dialect == "postgresql":
        for statement in views.reader_grant_statements():
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in views.reader_revoke_statements():
            op.execute(statement)
    for statement in views.drop_statements(dialect):
        op.execute(statement)

"""Alembic's environment and revisions of the warehouse schema, shipped inside the package."""

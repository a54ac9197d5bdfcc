"""The test harness itself: a real PostgreSQL 15, one fresh database per test."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def test_postgres_is_real_and_isolated(postgres_url: str, postgres_admin_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        version = conn.execute(text("show server_version_num")).scalar_one()
        conn.execute(text("create table t (x int)"))
        tables = conn.execute(text("select count(*) from pg_tables where schemaname='public'"))
        assert tables.scalar_one() == 1
    engine.dispose()
    assert int(version) // 10000 == 15
    assert postgres_url != postgres_admin_url

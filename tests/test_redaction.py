"""Every URL that is printed, logged or stored goes through one redaction that never leaks."""

from __future__ import annotations

import pytest

from cifar_ops.errors import WarehouseError
from cifar_ops.redaction import has_credentials, redact_url
from cifar_ops.warehouse.engine import dialect_of, masked

SECRET = "PW"

LEAKY = [
    ('"postgresql+psycopg2://u:PW@h:5/db"', '"postgresql+psycopg2://u:***@h:5/db"'),
    (" postgresql+psycopg2://u:PW@h/db", " postgresql+psycopg2://u:***@h/db"),
    ("u:PW@h/db", "u:***@h/db"),
    ("postgresql+psycopg2://u:PW@x@h/db", "postgresql+psycopg2://u:***@h/db"),
    (
        "postgresql+psycopg2://u:PW@h/db?sslmode=require",
        "postgresql+psycopg2://u:***@h/db?sslmode=require",
    ),
    ("postgresql://h/db?user=u&password=PW", "postgresql://h/db?user=u&password=***"),
    ("http://gw:PW@pushgateway:9091", "http://gw:***@pushgateway:9091"),
    ("postgresql://u@h/db?password=PW@x", "postgresql://u@h/db?password=***"),
    ("s3://b/p?aws_secret_access_key=PW", "s3://b/p?aws_secret_access_key=***"),
    ("s3://b/p?region=eu&secret_key=PW&x=1", "s3://b/p?region=eu&secret_key=***&x=1"),
    ("s3://b/p?access_key=PW", "s3://b/p?access_key=***"),
    ("gs://b/p?secret=PW", "gs://b/p?secret=***"),
    (
        "https://a.blob.core.windows.net/c?sv=1&sig=PW",
        "https://a.blob.core.windows.net/c?sv=1&sig=***",
    ),
    ("https://h/o?X-Amz-Signature=PW", "https://h/o?X-Amz-Signature=***"),
    ("https://h/o?signature=PW", "https://h/o?signature=***"),
    ("https://h/o?token=PW", "https://h/o?token=***"),
    ("https://h/o?access_token=PW", "https://h/o?access_token=***"),
]


@pytest.mark.parametrize(("url", "shown"), LEAKY)
def test_redact_url_hides_the_password_however_the_url_is_written(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert has_credentials(url)


@pytest.mark.parametrize(("url", "shown"), LEAKY)
def test_engine_masked_uses_the_redaction(url: str, shown: str) -> None:
    assert SECRET not in masked(url)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///cifar-ops.db",
        "postgresql://u@h/db",
        "http://pushgateway:9091",
        "",
        "s3://b/p?region=eu-west-1&design=1&signal=2",
    ],
)
def test_urls_without_secrets_are_unchanged(url: str) -> None:
    assert redact_url(url) == url == masked(url)


def test_has_credentials_counts_a_bare_user_too() -> None:
    assert has_credentials("http://pusher@pushgateway:9091")
    assert not has_credentials("http://pushgateway:9091/metrics")
    assert not has_credentials("http://[::1:9091")  # does not parse: nothing to hide


def test_a_url_that_does_not_parse_is_refused_without_its_password() -> None:
    with pytest.raises(WarehouseError) as caught:
        dialect_of('"postgresql+psycopg2://u:PW@h:5/db"')
    assert SECRET not in str(caught.value) and "***" in str(caught.value)


def test_an_unescaped_at_in_the_password_is_refused_before_the_driver_sees_it() -> None:
    with pytest.raises(WarehouseError, match="more than one '@'.*%40") as caught:
        dialect_of("postgresql+psycopg2://u:PW@tail@h:5/db")
    assert "PW" not in str(caught.value) and "tail" not in str(caught.value)


def test_a_sqlite_path_may_hold_at_signs() -> None:
    assert dialect_of("sqlite:////data/a@b/runs@1.db") == "sqlite"


LEAKED_ERROR = (
    "Error: looking up https://chartuser:hunter2@charts.example/index.yaml and "
    "https://b.blob.core.windows.net/c?sv=1&sig=s1gn3d: 401"
)

SHOWN_ERROR = (
    "Error: looking up https://chartuser:***@charts.example/index.yaml and "
    "https://b.blob.core.windows.net/c?sv=1&sig=*** 401"  # the signature's value ran to the space
)


def test_redact_text_keeps_the_prose_around_a_url() -> None:
    from cifar_ops.redaction import redact_text

    assert redact_text(LEAKED_ERROR) == SHOWN_ERROR
    # whole, the text loses everything from "Error:" to the URL's @
    assert redact_url(LEAKED_ERROR).startswith("Error:***@charts.example")
    spaced = "failed: postgresql://u:pass word@h/db refused"  # a password with a space
    assert "pass" not in redact_text(spaced) and "word" not in redact_text(spaced)
    assert redact_text("ok\n  two  lines\t") == "ok\n  two  lines\t"


def test_an_optuna_storage_error_quoting_a_url_is_redacted(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import optuna.storages

    from cifar_ops.search.storage import open_storage

    def refuse(*args, **kwargs):
        raise RuntimeError(LEAKED_ERROR)

    monkeypatch.setattr(optuna.storages, "RDBStorage", refuse)
    with pytest.raises(WarehouseError) as refused:
        open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    message = str(refused.value)
    assert "hunter2" not in message and "s1gn3d" not in message
    assert "looking up https://chartuser:***@charts.example/index.yaml and" in message
    assert "sig=***" in message


def test_stored_status_reasons_are_redacted(sqlite_url: str) -> None:
    from dataclasses import replace

    from cifar_ops.warehouse import open_store, synthetic

    start = synthetic.run_start("leaky")
    with open_store(sqlite_url) as store:
        store.register_queued([start])
        store.set_status(start.run_id, "failed", f"submit failed: {LEAKED_ERROR}")
        reason = store.get_run(start.run_id).summary.status_reason or ""
        assert "hunter2" not in reason and "s1gn3d" not in reason
        assert reason == f"submit failed: {SHOWN_ERROR}"
        store.start_run(start)
        store.finish_run(start.run_id, replace(synthetic.finish(), reason=LEAKED_ERROR))
        reason = store.get_run(start.run_id).summary.status_reason or ""
        assert reason == SHOWN_ERROR

"""Pushing a run's metrics to a real Pushgateway (Debian's), reading them back, deleting them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import pytest
from prometheus_client import CollectorRegistry

from cifar_ops.config import MonitoringConfig
from cifar_ops.errors import MonitoringError
from cifar_ops.monitoring import JOB, MetricsCallback, delete_run_metrics, push_run_metrics
from tests.monitoring_support import (
    GATEWAY_PASSWORD,
    GATEWAY_USER,
    free_port,
    http_get,
    pushgateway,
    run_start,
    tiny_fit,
    wait_until,
)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    with pushgateway(tmp_path) as url:
        yield url


def groups(gateway: str) -> dict[str, dict[str, Any]]:
    """run_id -> the Pushgateway's group of that run (its /api/v1/metrics entry)."""
    data = json.loads(http_get(f"{gateway}/api/v1/metrics"))["data"]
    return {group["labels"]["run_id"]: group for group in data}


def value(group: dict[str, Any], name: str, **labels: str) -> float:
    (metric,) = [
        m for m in group[name]["metrics"] if all(m["labels"].get(k) == v for k, v in labels.items())
    ]
    return float(metric["value"])


class ReadBackAtEpochEnd(keras.callbacks.Callback):
    """After the exporter's push at each epoch end, reads the run's group from the gateway."""

    def __init__(self, gateway: str, run_id: str) -> None:
        super().__init__()
        self.gateway, self.run_id = gateway, run_id
        self.seen: list[tuple[float, float, float]] = []  # (epoch, val_accuracy, Keras's value)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        group = groups(self.gateway)[self.run_id]
        self.seen.append(
            (
                value(group, "cifar_ops_epoch"),
                value(group, "cifar_ops_val_accuracy"),
                float((logs or {})["val_accuracy"]),
            )
        )


def test_every_epoch_and_the_end_are_pushed_to_the_runs_group_then_deleted(gateway: str) -> None:
    start, other = run_start(experiment="push"), run_start(experiment="push")
    exporter = MetricsCallback.from_config(MonitoringConfig(pushgateway=gateway), start)
    bystander = MetricsCallback.from_config(MonitoringConfig(pushgateway=gateway), other)
    assert exporter.port is None  # push only: nothing served
    reader = ReadBackAtEpochEnd(gateway, start.run_id)

    tiny_fit([exporter, reader], epochs=2)

    assert [epoch for epoch, _, _ in reader.seen] == [1, 2]
    for _, pushed, logged in reader.seen:
        assert pushed == pytest.approx(logged, rel=1e-6)
    group = groups(gateway)[start.run_id]
    assert group["labels"] == {"job": JOB, "run_id": start.run_id}
    assert value(group, "cifar_ops_run_status", status="running") == 1

    exporter.finish("succeeded")
    group = groups(gateway)[start.run_id]
    assert value(group, "cifar_ops_run_status", status="succeeded") == 1
    assert value(group, "cifar_ops_run_status", status="running") == 0
    assert value(group, "cifar_ops_batches_total") == 6
    text = http_get(f"{gateway}/metrics").decode()
    series = 'experiment="push",instance="",job="cifar-ops",model="tiny_dense"'
    assert f'cifar_ops_val_accuracy{{{series},run_id="{start.run_id}"}}' in text

    delete_run_metrics(gateway, start.run_id)  # answered 202: the gateway deletes it soon after
    wait_until(
        lambda: set(groups(gateway)) == {other.run_id}, timeout=5, what="the run's group deleted"
    )  # only that run's group went
    delete_run_metrics(gateway, start.run_id)  # deleting a missing group is fine
    bystander.finish("cancelled")
    assert value(groups(gateway)[other.run_id], "cifar_ops_run_status", status="cancelled") == 1


def test_an_unreachable_pushgateway_warns_and_training_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="cifar_ops.monitoring"):
        exporter = MetricsCallback(run_start(), pushgateway=nowhere)
        history = tiny_fit([exporter], epochs=1)
        exporter.finish("succeeded")
    assert len(history.history["loss"]) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # start, epoch 1, end
    assert all(nowhere in w and "training goes on" in w for w in warnings)


def test_deleting_from_an_unreachable_pushgateway_is_a_monitoring_error() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MonitoringError, match=rf"{nowhere}.*deleting run abc"):
        delete_run_metrics(nowhere, "abc")


def test_a_gateway_behind_basic_auth_takes_the_credentials_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pushgateway(tmp_path, basic_auth=True) as gateway:
        start = run_start(experiment="auth")
        monkeypatch.delenv("CIFAR_OPS_PUSHGATEWAY_USERNAME", raising=False)
        with pytest.raises(MonitoringError, match="Unauthorized"):
            push_run_metrics(gateway, start.run_id, CollectorRegistry())

        monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_USERNAME", GATEWAY_USER)
        monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_PASSWORD", "wrong")
        with pytest.raises(MonitoringError, match="Unauthorized") as caught:
            push_run_metrics(gateway, start.run_id, CollectorRegistry())
        assert "wrong" not in str(caught.value)

        monkeypatch.setenv("CIFAR_OPS_PUSHGATEWAY_PASSWORD", GATEWAY_PASSWORD)
        exporter = MetricsCallback.from_config(MonitoringConfig(pushgateway=gateway), start)
        exporter.finish("succeeded")

        def pushed() -> list[dict[str, Any]]:
            auth = (GATEWAY_USER, GATEWAY_PASSWORD)
            return json.loads(http_get(f"{gateway}/api/v1/metrics", auth=auth))["data"]

        assert [group["labels"]["run_id"] for group in pushed()] == [start.run_id]
        delete_run_metrics(gateway, start.run_id)  # answered 202, deleted soon after
        wait_until(lambda: pushed() == [], timeout=5, what="the run's group deleted")


def test_a_failed_push_names_the_gateway_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"http://user:PW-in-url@127.0.0.1:{free_port()}"
    with pytest.raises(MonitoringError) as caught:
        delete_run_metrics(nowhere, "abc")
    assert "PW-in-url" not in str(caught.value) and "user:***@127.0.0.1" in str(caught.value)
    with caplog.at_level(logging.WARNING, logger="cifar_ops.monitoring"):
        MetricsCallback(run_start(), pushgateway=nowhere).finish("failed")
    assert caplog.records and "PW-in-url" not in caplog.text

"""Support for the monitoring tests: real Prometheus and Pushgateway servers, a tiny Keras fit.

Debian's /usr/bin/prometheus and /usr/bin/prometheus-pushgateway are started on free 127.0.0.1
ports, waited for on /-/ready, and stopped (terminate, then kill) when the block ends.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def binary(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/usr/local/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test` (it installs Debian's {name})")
    return path


def http_get(url: str, timeout: float = 5.0, *, auth: tuple[str, str] | None = None) -> bytes:
    """GET `url`; `auth`: basic-auth user and password."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextmanager
def _process(
    command: list[str], ready_url: str, log: Path, auth: tuple[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until(
                lambda: (
                    proc.poll() is None and http_get(ready_url, timeout=1, auth=auth) is not None
                ),
                timeout=STARTUP_SECONDS,
                what=f"{command[0]} on {ready_url}",
            )
        except BaseException:
            if proc.poll() is not None:
                pytest.fail(f"{command[0]} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
            raise
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class PrometheusAPI:
    """The few HTTP API calls the tests make."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        body = json.loads(http_get(f"{self.url}{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        return self.get("/api/v1/query", **params)["result"]

    def samples(self, selector: str, window: str = "10m") -> list[tuple[float, float]]:
        """Raw scraped samples (timestamp, value) of the one series `selector` matches."""
        result = self.query(f"{selector}[{window}]")
        assert len(result) <= 1, result
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


@contextmanager
def prometheus(
    tmp_path: Path,
    targets: list[str],
    rule_files: list[Path] = (),  # type: ignore[assignment]
) -> Iterator[PrometheusAPI]:
    """A Prometheus scraping `targets` (host:port) every second, evaluating rules every second."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": "cifar-ops", "static_configs": [{"targets": targets}]}],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    command = [
        binary("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with _process(command, f"{url}/-/ready", tmp_path / "prometheus.log"):
        yield PrometheusAPI(url)


# bcrypt (cost 4) of the password "gw-T0ken-9f2c", for a Pushgateway behind basic auth.
GATEWAY_USER, GATEWAY_PASSWORD = "pusher", "gw-T0ken-9f2c"
GATEWAY_PASSWORD_BCRYPT = "$2b$04$EdJD/zg3FSj.5qA9o9Z14uPalIUa4RgBx9H4rVdFkFzcqmLMXMH.2"


@contextmanager
def pushgateway(tmp_path: Path, *, basic_auth: bool = False) -> Iterator[str]:
    """A Pushgateway on loopback, no persistence; yields its URL.

    `basic_auth`: every request needs GATEWAY_USER / GATEWAY_PASSWORD (its web config file).
    """
    port = free_port()
    command = [
        binary("prometheus-pushgateway"),
        f"--web.listen-address=127.0.0.1:{port}",
        "--persistence.file=",  # Debian's default is /var/lib/prometheus/pushgateway.data
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    auth = None
    if basic_auth:
        web_config = tmp_path / "pushgateway-web.yml"
        users = {"basic_auth_users": {GATEWAY_USER: GATEWAY_PASSWORD_BCRYPT}}
        web_config.write_text(yaml.safe_dump(users))
        command.append(f"--web.config.file={web_config}")
        auth = (GATEWAY_USER, GATEWAY_PASSWORD)
    with _process(command, f"{url}/-/ready", tmp_path / "pushgateway.log", auth):
        yield url


def run_start(experiment: str = "monitoring-test", model: str = "tiny_dense") -> Any:
    """A RunStart for a fresh run id, as the runner would register it."""
    import uuid

    from cifar_ops.records import RunStart

    return RunStart(
        run_id=uuid.uuid4().hex,
        experiment=experiment,
        model_name=model,
        config={"train": {"batch_size": BATCH_SIZE}},
        config_hash="0" * 64,
    )


BATCH_SIZE = 16
TRAIN_IMAGES = 48  # 3 batches per epoch; 16 more images are held out for validation


def tiny_fit(
    callbacks: list[Any], *, epochs: int = 2, diverge: bool = False, steps_per_execution: int = 1
) -> Any:
    """`model.fit` of a one-layer classifier on random data (seconds on a CPU); its History.

    As in `training.fit`, the engine's `EpochRecorder` goes first and hands each epoch's record to
    the callbacks that listen for one (the exporter). `diverge=True` multiplies the logits by NaN,
    so every loss is NaN.
    """
    import keras
    import numpy as np

    from cifar_ops.callbacks import EpochListener, EpochRecorder

    listeners = [cb for cb in callbacks if isinstance(cb, EpochListener)]
    recorder = EpochRecorder("train", TRAIN_IMAGES, listeners)

    rng = np.random.default_rng(0)
    x = rng.random((TRAIN_IMAGES + 16, 8), dtype=np.float32)
    y = rng.integers(0, 3, TRAIN_IMAGES + 16)
    inputs = keras.Input((8,))
    logits = keras.layers.Dense(3)(inputs)
    if diverge:
        logits = keras.layers.Lambda(lambda t: t * float("nan"))(logits)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model.fit(
        x[:TRAIN_IMAGES],
        y[:TRAIN_IMAGES],
        validation_data=(x[TRAIN_IMAGES:], y[TRAIN_IMAGES:]),
        epochs=epochs,
        batch_size=BATCH_SIZE,
        callbacks=[recorder, *callbacks],
        verbose=0,
    )


# --- the chart's dashboard and rules ----------------------------------------------------------

DASHBOARD = (
    Path(__file__).resolve().parent.parent / "charts/cifar-ops/files/dashboards/cifar-ops.json"
)
RULES = Path(__file__).resolve().parent.parent / "charts/cifar-ops/files/rules/cifar-ops.yaml"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query panel whose datasource type is `kind`."""
    return [
        (panel["title"], target)
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
        if target["datasource"]["type"] == kind
    ]


def fill_variables(query: str, values: dict[str, str]) -> str:
    """Substitute Grafana's `$name`, `${name}` and `${name:format}` as Grafana would here."""
    import re

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return values[name]

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", one, query)


def with_rule_interval(tmp_path: Path, interval: str) -> Path:
    """A copy of the chart's rules file whose groups are evaluated every `interval`."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = interval
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path

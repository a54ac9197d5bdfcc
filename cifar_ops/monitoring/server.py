"""Serve a registry on /metrics, notice Prometheus's scrapes, and stop cleanly.

A Job's pod exits as soon as its run ends, so a scraper polling every 15-30 s would rarely see the
terminal status. The server therefore records when it is scraped, and `wait_for_scrape` lets the
run linger (bounded) until one scrape has read the final state. Only a process scraped at a
measured interval (two scrapes seen) waits: nobody scraping, or one look with curl, never holds
a finished run.
"""

from __future__ import annotations

import errno
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric

from cifar_ops.errors import MonitoringError


class _ScrapeWatcher:
    """A collector that exports nothing and notes the time of each scrape."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._changed = threading.Condition()
        self._local = threading.local()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        if not getattr(self._local, "muted", False):
            with self._changed:
                self.times = [*self.times[-9:], time.monotonic()]
                self._changed.notify_all()
        return []

    @contextmanager
    def muted(self) -> Iterator[None]:
        """Collections in this block (a Pushgateway push from this thread) are not scrapes."""
        self._local.muted = True
        try:
            yield
        finally:
            self._local.muted = False

    def wait_after(self, since: float, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: bool(self.times) and self.times[-1] > since, timeout
            )


class MetricsServer:
    """/metrics of one registry over HTTP on `address:port` (port 0: a free one, see `.port`)."""

    def __init__(self, registry: CollectorRegistry, *, port: int, address: str) -> None:
        self.watcher = _ScrapeWatcher()
        # Registered before any metric is collected in a scrape, so a scrape noted after a change
        # also read that change.
        registry.register(self.watcher)  # type: ignore[arg-type]
        try:
            self._httpd, self._thread = start_http_server(port, address, registry)
        except OSError as exc:
            registry.unregister(self.watcher)  # type: ignore[arg-type]
            if exc.errno == errno.EADDRINUSE:
                raise MonitoringError(
                    f"monitoring.port {port} on {address} is already in use: pick another port, "
                    "or 0 for a free one"
                ) from None
            raise MonitoringError(
                f"cannot serve /metrics on {address}:{port} (monitoring.port): {exc.strerror}"
            ) from None
        self.address = address
        self.port: int = self._httpd.server_address[1]

    @property
    def scrape_count(self) -> int:
        return len(self.watcher.times)

    def wait_for_scrape(self, *, max_seconds: float) -> bool:
        """Wait for one scrape from now on, if something scrapes us regularly; True if one came.

        Waits at most twice the observed scrape interval plus a second, and never more than
        `max_seconds`; returns False at once when fewer than two scrapes (no interval) were seen.
        """
        times = list(self.watcher.times)
        if len(times) < 2:
            return False
        now = time.monotonic()
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return self.watcher.wait_after(now, min(2 * statistics.median(gaps) + 1, max_seconds))

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

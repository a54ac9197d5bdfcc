"""`cifar-ops report` end to end: real training runs -> warehouse -> HTML -> headless Chromium.

A tiny grid search (synthetic data, 2 epochs) is trained once into a SQLite warehouse for the
module. The report's numbers are compared with the reporting views read directly with pandas, and
the page is opened in Debian's Chromium over the DevTools protocol: every section must render,
nothing may be fetched from the network and the console must stay free of errors. The screenshot
is kept at .artifacts/report-screenshot.png for CI. One more run goes through real PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.config import load_config
from cifar_ops.warehouse.views import qualified_name
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / ".artifacts" / "report-screenshot.png"
BROWSER_TIMEOUT_S = 60.0

SEARCH_YAML = """
experiment: report-grid
seed: 7
data: {source: synthetic, synthetic_images: 240, num_classes: 4, image_size: 16}
model: {name: simple_cnn, filters: [4], dense_units: 8}
optimizer: {name: adam, learning_rate: 0.01}
train: {epochs: 2, batch_size: 32}
evaluation: {calibration_bins: 5}
search:
  method: grid
  parameters:
    optimizer.learning_rate: [0.003, 0.01]
    train.batch_size: [16, 32]
"""


# --- training the runs once ----------------------------------------------------------------------


def _train(config_yaml: str, url: str, where: Path) -> None:
    from cifar_ops.executors.local import execute_search
    from cifar_ops.warehouse import open_store

    path = where / "search.yaml"
    path.write_text(config_yaml)
    search = load_config(path)
    outcomes = execute_search(search, sink=open_store(url))
    assert [o.status for o in outcomes] == ["succeeded"] * len(search.trials)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite warehouse URL holding the four trials of the grid search."""
    where = tmp_path_factory.mktemp("report-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIFAR_OPS_ARTIFACTS", str(where / "runs"))
        patch.chdir(where)
        url = f"sqlite:///{where / 'warehouse.db'}"
        _train(SEARCH_YAML, url, where)
    yield url


# --- reading the views and the page --------------------------------------------------------------


def _view(url: str, name: str, where: str = "", **params: Any) -> pd.DataFrame:
    engine = create_engine(url)
    sql = f"SELECT * FROM {qualified_name(name, engine.dialect.name)}"
    try:
        with engine.connect() as connection:
            return pd.read_sql(text(sql + (f" WHERE {where}" if where else "")), connection,
                               params=params)  # fmt: skip
    finally:
        engine.dispose()


def _payload(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S
    )
    assert match is not None
    return json.loads(match.group(1))


class _DataValues(HTMLParser):
    """(run id of the enclosing run section or row, field name) -> data-value, from the markup."""

    def __init__(self) -> None:
        super().__init__()
        self.run: str | None = None
        self.values: dict[tuple[str | None, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-run-id"):
            self.run = a["data-run-id"]
        name = a.get("data-kpi") or a.get("data-field")
        if name and "data-value" in a and "data-class" not in a:
            self.values.setdefault((self.run, name), a["data-value"] or "")


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(b, float) and pd.isna(b)):
        return (a is None) and (b is None or pd.isna(b))
    return a == pytest.approx(float(b), rel=1e-9, abs=1e-12)


def _report(args: list[str], url: str, out: Path, runner: CliRunner) -> str:
    result = runner.invoke(app, ["report", *args, "-o", str(out)], env={
        "CIFAR_OPS_DATABASE_URL": url})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return out.read_text()


# --- numbers -------------------------------------------------------------------------------------


def _assert_run_matches_views(run: dict[str, Any], url: str, values: dict) -> None:
    run_id = run["run_id"]
    summary = _view(url, "run_summary", "run_id = :r", r=run_id).iloc[0]
    epochs = _view(url, "epoch_curves", "run_id = :r", r=run_id).sort_values("epoch")
    kpis = run["kpis"]
    assert kpis["best_epoch"] == summary["best_epoch"]
    at_best = epochs.loc[epochs["epoch"] == summary["best_epoch"], "val_accuracy"].iloc[0]
    expected = {
        "best_accuracy": at_best,
        "test_accuracy": summary["test_accuracy"],
        "overfitting_gap": summary["overfitting_gap"],
        "param_count": summary["param_count"],
        "training_seconds": summary["duration_seconds"],
    }
    for name, value in expected.items():
        assert _close(kpis[name], value), name
        assert _close(json.loads(values[(run_id, name)]), value), f"data-value of {name}"

    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        shown = [row[column] for row in run["epochs"]]
        assert shown == pytest.approx(epochs[column].tolist()), column
    assert [row["epoch"] for row in run["epochs"]] == epochs["epoch"].tolist()

    classes = _view(url, "class_metrics", "run_id = :r AND split = 'test'", r=run_id)
    classes = classes.sort_values("class_index")
    for column in ("precision", "recall", "f1", "support"):
        assert [row[column] for row in run["class_metrics"]] == pytest.approx(
            classes[column].tolist()
        )

    confusion = _view(url, "confusion", "run_id = :r AND split = 'test'", r=run_id)
    counts = run["confusion"]["counts"]
    assert sum(map(sum, counts)) == confusion["count"].sum() == classes["support"].sum()
    for cell in confusion.itertuples():
        assert counts[cell.true_class][cell.predicted_class] == cell.count

    bins = _view(url, "calibration", "run_id = :r AND split = 'test'", r=run_id)
    bins = bins.sort_values("bin_index")
    assert [b["count"] for b in run["calibration"]] == bins["count"].tolist()
    for shown, (_, row) in zip(run["calibration"], bins.iterrows(), strict=True):
        assert _close(shown["accuracy"], row["accuracy"])
        assert _close(shown["mean_confidence"], row["mean_confidence"])

    wrong = _view(url, "misclassifications", "run_id = :r AND split = 'test'", r=run_id)
    top = wrong.sort_values(["confidence", "image_index"], ascending=[False, True]).head(24)
    assert [m["image_index"] for m in run["mistakes"]] == top["image_index"].tolist()
    assert [m["confidence"] for m in run["mistakes"]] == pytest.approx(top["confidence"].tolist())
    assert [m["true_class_name"] for m in run["mistakes"]] == top["true_class_name"].tolist()


@pytest.mark.slow
def test_search_report_numbers_equal_the_reporting_views(
    trained: str, tmp_path: Path, cli_runner: CliRunner
) -> None:
    html = _report(["--experiment", "report-grid", "--details", "4"], trained, tmp_path / "r.html",
                   cli_runner)  # fmt: skip
    payload = _payload(html)
    parser = _DataValues()
    parser.feed(html)

    summaries = _view(trained, "run_summary", "experiment = 'report-grid'")
    assert len(payload["runs"]) == len(summaries) == 4
    for run in payload["runs"]:
        _assert_run_matches_views(run, trained, parser.values)

    board = _view(trained, "search_leaderboard", "experiment = 'report-grid'")
    shown = {row["run_id"]: row for row in payload["search"]["leaderboard"]}
    assert set(shown) == set(board["run_id"])
    for row in board.itertuples():
        assert shown[row.run_id]["rank"] == row.rank
        assert _close(shown[row.run_id]["val_accuracy"], row.val_accuracy)
        for key, value in json.loads(row.trial_params).items():
            assert shown[row.run_id][key] == value
    assert payload["search"]["heatmap_axes"] == ["optimizer.learning_rate", "train.batch_size"]

    comparison = {row["run_id"]: row for row in payload["comparison"]}
    for row in summaries.itertuples():
        assert _close(comparison[row.run_id]["test_accuracy"], row.test_accuracy)
        assert _close(comparison[row.run_id]["test_loss"], row.test_loss)
        assert _close(comparison[row.run_id]["overfitting_gap"], row.overfitting_gap)
        assert comparison[row.run_id]["param_count"] == row.param_count


def _image_folder(root: Path, classes: int = 3, per_class: int = 20) -> Path:
    """A folder-source dataset of noise PNGs: the model cannot learn it, so mistakes are certain."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"kind{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.mark.slow
@pytest.mark.postgres
def test_report_from_postgresql_with_image_thumbnails(
    postgres_url: str, tmp_path: Path, cli_runner: CliRunner
) -> None:
    from cifar_ops import runner
    from cifar_ops.warehouse import open_store
    from cifar_ops.warehouse.migrate import upgrade_database

    upgrade_database(postgres_url)  # PostgreSQL is migrated once, not by each run
    images = _image_folder(tmp_path / "images")
    path = tmp_path / "run.yaml"
    path.write_text(
        SEARCH_YAML.split("search:")[0]
        .replace("report-grid", "report-pg")
        .replace(
            "source: synthetic, synthetic_images: 240, num_classes: 4",
            f"source: folder, dir: {images}",
        )
    )
    outcome = runner.execute(load_config(path), sink=open_store(postgres_url))
    html = _report([outcome.run_id[:10]], postgres_url, tmp_path / "pg.html", cli_runner)

    payload = _payload(html)
    parser = _DataValues()
    parser.feed(html)
    assert [r["run_id"] for r in payload["runs"]] == [outcome.run_id]
    _assert_run_matches_views(payload["runs"][0], postgres_url, parser.values)
    assert payload["comparison"] is None and payload["search"] is None
    mistakes = payload["runs"][0]["mistakes"]
    assert mistakes and all(Path(m["image_ref"]).parent.parent == images for m in mistakes)
    assert html.count('<img src="data:image/png;base64,') == len(mistakes)
    assert 'class="placeholder"' not in html


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0123456789abcdef"], "no run '0123456789abcdef'"),
        (["--experiment", "nothing-here"], "experiment 'nothing-here' has no runs"),
        (["--experiment", "report-grid", "--heatmap", "train.batch_size,seed"], "heatmap axes"),
    ],
)
def test_unknown_runs_fail_clearly_and_write_nothing(
    trained: str, tmp_path: Path, cli_runner: CliRunner, args: list[str], message: str
) -> None:
    out = tmp_path / "never.html"
    result = cli_runner.invoke(app, ["report", *args, "-o", str(out)], env={
        "CIFAR_OPS_DATABASE_URL": trained})  # fmt: skip
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [], "no report file, no temp file"


def test_run_ids_and_experiment_are_exclusive(cli_runner: CliRunner, tmp_path: Path) -> None:
    for args in ([], ["abc", "--experiment", "x"]):
        result = cli_runner.invoke(app, ["report", *args, "-o", str(tmp_path / "x.html")])
        assert result.exit_code == 2
        assert "--experiment" in result.output
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_a_regular_file_or_a_new_one_in_an_existing_directory(
    cli_runner: CliRunner, tmp_path: Path, sqlite_url: str
) -> None:
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    refused = {
        str(fifo): "not a regular file",
        "/dev/null": "not a regular file",
        str(folder): "is a directory",
        "": "is a directory",  # typer reads '' as the current directory
        "/proc/x.html": "/proc",
        str(tmp_path / "missing" / "r.html"): "no directory",
    }
    for output, message in refused.items():
        result = cli_runner.invoke(
            app, ["report", "abc", "-o", output], env={"CIFAR_OPS_DATABASE_URL": sqlite_url}
        )
        assert result.exit_code == 2, (output, result.output)
        assert result.output.startswith("error: --output") and message in result.output, output
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "pipe.html"]


# --- the browser ---------------------------------------------------------------------------------


class Chromium:
    """Headless Chromium over the DevTools protocol: one page, its console, its requests."""

    def __init__(self, profile: Path, timeout: float = BROWSER_TIMEOUT_S):
        self.profile = profile
        self.deadline = time.monotonic() + timeout
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log = (self.profile.parent / "chromium.log").open("w")
        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip
        self.ws: Any = None
        try:
            self._connect()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _connect(self) -> None:
        import websocket

        port_file = self.profile / "DevToolsActivePort"
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}; see its log")
            self._check_time("start")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=10)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def __exit__(self, *exc: object) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):  # already gone: the process is killed below
                self.call("Browser.close")
            self.ws.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()

    def _check_time(self, doing: str) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"chromium took longer than {BROWSER_TIMEOUT_S} s to {doing}")

    def _receive(self) -> dict[str, Any]:
        self._check_time("answer")
        message = json.loads(self.ws.recv())
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        seen = len(self.events)
        self.call("Page.navigate", session=True, url=url)
        while not any(e["method"] == "Page.loadEventFired" for e in self.events[seen:]):
            self._receive()

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        shot = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def console_errors(self) -> list[str]:
        errors = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(json.dumps(params["args"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(params["entry"]["text"])
        return errors

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]


PAGE_SUMMARY_JS = """(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const plots = [...document.querySelectorAll('figure.plot')].map((fig) => ({
    plot: fig.dataset.plot, hidden: fig.hidden,
    drawn: !!fig.querySelector('svg') && fig.querySelectorAll('svg path, svg image').length > 3
           && (fig.hidden || box(fig.querySelector('svg'))),
  }));
  const runs = [...document.querySelectorAll('section[data-section=run]')].map((s) => ({
    id: s.dataset.runId,
    kpis: [...s.querySelectorAll('.kpi')].map((k) => [k.dataset.kpi,
      k.querySelector('.value').textContent.trim()]),
    plots: [...s.querySelectorAll('figure.plot')].map((f) => f.dataset.plot),
    classRows: s.querySelectorAll('table.class-metrics tbody tr').length,
    mistakes: s.querySelectorAll('figure.mistake').length,
    placeholders: s.querySelectorAll('figure.mistake .placeholder').length,
  }));
  return {
    title: document.title, plots, runs,
    comparisonRows: document.querySelectorAll('table.comparison tbody tr').length,
    leaderboardRows: document.querySelectorAll('table.leaderboard tbody tr').length,
    heatmapOptions: [...document.querySelectorAll('#heatmap-axes option')].map((o) => o.value),
  };
})()"""

SWITCH_HEATMAP_JS = """(() => {
  const select = document.getElementById('heatmap-axes');
  select.selectedIndex = select.options.length - 1;
  select.dispatchEvent(new Event('change'));
  return [...document.querySelectorAll('figure.heatmap')]
    .filter((f) => !f.hidden).map((f) => f.dataset.axes);
})()"""


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(
    trained: str, tmp_path: Path, cli_runner: CliRunner
) -> None:
    page = tmp_path / "report.html"
    _report(["--experiment", "report-grid", "--details", "2"], trained, page, cli_runner)

    with Chromium(tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        summary = browser.evaluate(PAGE_SUMMARY_JS)
        browser.screenshot(SCREENSHOT)
        visible_after_switch = browser.evaluate(SWITCH_HEATMAP_JS)
        errors = browser.console_errors()
        fetched = browser.requested_urls()

    assert errors == [], errors
    assert [u for u in fetched if not u.startswith(("data:", page.as_uri()))] == []
    assert summary["title"] == "Experiment report-grid"
    assert summary["comparisonRows"] == 4 and summary["leaderboardRows"] == 4
    assert summary["heatmapOptions"] == ["optimizer.learning_rate|train.batch_size"]
    assert visible_after_switch == summary["heatmapOptions"][-1:]
    assert all(p["drawn"] for p in summary["plots"]), summary["plots"]
    kinds = [p["plot"] for p in summary["plots"]]
    assert kinds.count("comparison") == 1 and kinds.count("search-heatmap") == 1
    assert len(summary["runs"]) == 2
    for run in summary["runs"]:
        assert run["plots"] == ["learning-curves", "class-metrics", "confusion", "calibration"]
        assert dict(run["kpis"]).keys() == {
            "best_accuracy", "best_epoch", "test_accuracy", "overfitting_gap", "param_count",
            "training_seconds",
        }  # fmt: skip
        assert all(value and value != "n/a" for _, value in run["kpis"]), run["kpis"]
        assert run["classRows"] == 4
        # every mistake the page's data lists is drawn, as a placeholder (synthetic: no files);
        # a run that scored every test image has none (the grid's best may, on 4 easy classes)
        listed = {r["run_id"]: len(r["mistakes"]) for r in _payload(page.read_text())["runs"]}
        assert run["mistakes"] == listed[run["id"]] and run["placeholders"] == run["mistakes"]
    assert sum(run["mistakes"] for run in summary["runs"]) > 0
    assert SCREENSHOT.stat().st_size > 10_000

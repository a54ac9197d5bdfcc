"""bench/seed_parity.py runs end to end for two tiny rows on synthetic data (the real rows are
benchmarks on the shared JPEGs): each row trains through `cifar-ops run` in a child process, the
table carries every column, the transfer row gives the command for a user with weights, and the
printed `cifar-ops report` command gives one page with the comparison; `--table` reprints every
row from the results file without training. No accuracy is asserted."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cifar_ops.cli import app
from cifar_ops.config import load_run_config
from cifar_ops.warehouse.store import open_store
from tests.bench_scripts import load_bench
from tests.conftest import REPO

TINY_SETS = [
    "data.source=synthetic",
    "data.synthetic_images=240",
    "data.num_classes=4",
    "data.image_size=16",
    "train.epochs=1",
    "train.batch_size=32",
    "evaluation.log_predictions=false",
]


def markdown_table(out: str) -> tuple[list[str], dict[str, str]]:
    """The printed table's header cells, and its rows (as printed) by their first cell."""
    table = [line for line in out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    return header, {line.split("|")[1].strip(): line for line in table[2:]}


def test_every_row_has_a_config_and_a_seed_figure() -> None:
    bench = load_bench("seed_parity")
    for row in bench.ROWS:
        assert (REPO / row.config).is_file(), row.config
        assert 0.5 < row.figure < 1
    transfer = {row.name for row in bench.ROWS if row.transfer_sets}
    assert transfer == {"mobilenetv2", "efficientnetv2b0_96", "efficientnetv2b0"}


@pytest.mark.parametrize(
    ("seed", "fast"), [("resnet20", "resnet20_fast"), ("resnet_wide", "resnet_wide_fast")]
)
def test_compressed_recipes_keep_the_seed_architecture(seed: str, fast: str) -> None:
    from cifar_ops.models import build_model

    seed_config = load_run_config(REPO / f"jobs/configs/{seed}.yaml")
    fast_config = load_run_config(REPO / f"jobs/configs/{fast}.yaml")
    assert fast_config.model == seed_config.model
    counts = [
        build_model(c.model, input_shape=(32, 32, 3), num_classes=10).count_params()
        for c in (seed_config, fast_config)
    ]
    assert counts[0] == counts[1]
    assert fast_config.train.epochs < seed_config.train.epochs


def test_unknown_row_is_refused_naming_the_rows() -> None:
    bench = load_bench("seed_parity")
    with pytest.raises(SystemExit, match="unknown row.*nope.*simple_cnn"):
        bench.main(["--only", "nope"])


def test_driver_runs_two_rows_and_prints_the_table_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("seed_parity")
    workdir = tmp_path / "parity"
    argv = ["--only", "simple_cnn,conv4_bn,mobilenetv2", "--workdir", str(workdir)]
    for item in TINY_SETS:
        argv += ["--set", item]
    results = bench.main(argv)

    assert set(results) == {"simple_cnn", "conv4_bn"}
    for result in results.values():
        assert result["status"] == "succeeded", result
        assert result["epochs"] == 1
        assert 0 <= result["test_accuracy"] <= 1
        assert result["overfitting_gap"] == pytest.approx(
            result["train_accuracy"] - result["test_accuracy"]
        )
        with open_store(bench.database_url(workdir)) as store:
            last = store.epochs(result["run_id"])[-1]
        assert result["history_gap"] == pytest.approx(last.accuracy - result["test_accuracy"])
        assert result["wall_seconds"] > 0 and result["peak_rss_mib"] > 100  # TensorFlow's child
    lines = (workdir / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == ["simple_cnn", "conv4_bn"]

    out = capsys.readouterr().out
    header, rows = markdown_table(out)
    assert header == list(bench.COLUMNS)
    assert set(rows) == {"simple_cnn", "conv4_bn", "mobilenetv2"}
    simple = [cell.strip() for cell in rows["simple_cnn"].strip("|").split("|")]
    assert len(simple) == len(bench.COLUMNS)
    assert simple[3] == "67.47%" and simple[4] == "+17.8"
    assert simple[8] == f"{100 * results['simple_cnn']['history_gap']:+.1f}"
    assert simple[10] == "1" and simple[11].endswith(" min") and simple[12].endswith(" MiB")
    assert bench.NO_WEIGHTS in rows["mobilenetv2"]
    assert "--set model.weights=imagenet" in rows["mobilenetv2"]

    command = next(line.strip() for line in out.splitlines() if "cifar-ops report" in line)
    words = shlex.split(command)
    env, run_ids = words[0], words[3:5]
    assert run_ids == [results["simple_cnn"]["run_id"], results["conv4_bn"]["run_id"]]
    monkeypatch.setenv(*env.split("=", 1))
    page = tmp_path / "parity.html"
    outcome = CliRunner().invoke(app, ["report", *run_ids, "--details", "0", "-o", str(page)])
    assert outcome.exit_code == 0, outcome.output
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S
    )
    assert found, "the page carries its numbers as JSON"
    comparison = {row["run_id"]: row for row in json.loads(found.group(1))["comparison"]}
    assert set(comparison) == set(run_ids)
    for name, result in results.items():
        row = comparison[result["run_id"]]
        assert row["test_accuracy"] == pytest.approx(result["test_accuracy"]), name
        assert row["overfitting_gap"] == pytest.approx(result["overfitting_gap"]), name
        assert row["param_count"] == result["param_count"], name

    capsys.readouterr()
    assert bench.main(["--table", "--workdir", str(workdir)]) == results  # trains nothing
    lines = (workdir / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    _, every = markdown_table(capsys.readouterr().out)
    assert set(every) == {row.name for row in bench.ROWS}
    assert every["simple_cnn"] == rows["simple_cnn"]
    assert every["vgg10"].rstrip(" |").endswith("not run")


# a stand-in for `cifar-ops run`: says it is ready, then stops on SIGTERM the way run does (143)
SIGTERM_CHILD = """
import pathlib, signal, sys, time
marks = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (marks.joinpath("stopped").touch(), sys.exit(143)))
marks.joinpath("ready").touch()
time.sleep(20)
"""


def stop_a_row_with_sigterm(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> int:
    """Run the bench on `argv` with a stand-in child, SIGTERM the bench once the child is up;
    the bench's exit code."""
    import signal
    import sys
    import threading
    import time

    command = [sys.executable, "-c", SIGTERM_CHILD, str(tmp_path)]
    real_command = bench.run_command
    monkeypatch.setattr(bench, "run_command", lambda *_args: command)
    ignore = lambda *_: None  # noqa: E731 - without the bench's handler the kill must not end pytest
    before = signal.signal(signal.SIGTERM, ignore)

    def kill_when_ready() -> None:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=kill_when_ready)
    killer.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            bench.main(argv)
        assert signal.getsignal(signal.SIGTERM) is ignore  # the bench put back what it found
    finally:
        killer.join()
        signal.signal(signal.SIGTERM, before)
    monkeypatch.setattr(bench, "run_command", real_command)
    assert isinstance(stopped.value.code, int)
    return stopped.value.code


def test_a_sigterm_to_the_bench_stops_its_training_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill` on the bench once left its child training on, unseen, beside the next row."""
    import signal

    bench = load_bench("seed_parity")
    argv = ["--only", "simple_cnn", "--workdir", str(tmp_path / "work")]
    assert stop_a_row_with_sigterm(bench, tmp_path, monkeypatch, argv) == 128 + signal.SIGTERM
    assert (tmp_path / "stopped").exists()  # the child got the signal and exited on it
    assert not (tmp_path / "work/results.jsonl").exists()  # a stopped row records no result
    (segment,) = map(json.loads, (tmp_path / "work/segments.jsonl").read_text().splitlines())
    assert segment["row"] == "simple_cnn" and segment["exit_code"] == 143
    assert segment["wall_seconds"] > 0 and segment["peak_rss_mib"] > 0


def test_resume_continues_a_stopped_run_and_counts_every_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row longer than one sitting: stopped once, then `--resume RUN_ID` trains the same run
    id to the end; the result adds the segments' wall time and keeps the highest peak memory."""
    bench = load_bench("seed_parity")
    workdir = tmp_path / "work"
    argv = ["--only", "simple_cnn", "--workdir", str(workdir)]
    for item in TINY_SETS:
        argv += ["--set", item]
    stop_a_row_with_sigterm(bench, tmp_path, monkeypatch, argv)
    (stopped,) = map(json.loads, (workdir / "segments.jsonl").read_text().splitlines())
    run_id = stopped["run_id"]
    capsys.readouterr()
    bench.main(["--table", "--only", "vgg10", "--workdir", str(workdir)])
    _, table = markdown_table(capsys.readouterr().out)
    assert set(table) == {"simple_cnn", "vgg10"}  # a stopped row is shown, unasked
    assert table["vgg10"].rstrip(" |").endswith("not run")
    assert "in progress: stopped after 1 sitting(s)" in table["simple_cnn"]
    assert f"--resume {run_id}" in table["simple_cnn"]

    (workdir / "segments.jsonl").write_text(  # a sitting whose bench died unrecorded, by hand
        json.dumps(stopped) + "\n" + json.dumps(stopped | {"peak_rss_mib": None}) + "\n"
    )
    with pytest.raises(SystemExit, match="same row and --set options"):
        bench.main([*argv, "--set", "train.epochs=2", "--resume", run_id])
    with pytest.raises(SystemExit, match="no stopped segment"):
        bench.main([*argv, "--resume", "0" * 32])
    with pytest.raises(SystemExit, match="one run"):
        bench.main([*argv[:1], "simple_cnn,vgg10", *argv[2:], "--resume", run_id])

    commands: list[list[str]] = []
    real_command = bench.run_command

    def recorded_command(*args: Any) -> list[str]:
        commands.append(real_command(*args))
        return commands[-1]

    monkeypatch.setattr(bench, "run_command", recorded_command)
    first_sitting = (workdir / "logs/simple_cnn.log").read_bytes() + b"first sitting\n"
    (workdir / "logs/simple_cnn.log").write_bytes(first_sitting)
    results = bench.main([*argv, "--resume", run_id])
    assert (workdir / "logs/simple_cnn.log").read_bytes().startswith(first_sitting)  # kept
    assert commands and commands[0][commands[0].index("--run-id") + 1] == run_id
    result = results["simple_cnn"]
    assert result["status"] == "succeeded" and result["run_id"] == run_id
    assert result["segments"] == 3 and result["epochs"] == 1
    last_segment = result["wall_seconds"] - 2 * stopped["wall_seconds"]
    assert last_segment > 0
    assert result["peak_rss_mib"] >= stopped["peak_rss_mib"]  # the highest sitting's
    assert result["peak_rss_mib"] > 100  # TensorFlow's child
    _, table = markdown_table(capsys.readouterr().out)
    assert "in progress" not in table["simple_cnn"]  # finished: its result replaces the note


def test_a_run_stopped_after_a_rows_result_is_named_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row whose recipe changed keeps its last result, but a newer stopped run must show (the
    table would otherwise read as settled); an abandoned run older than the result does not."""
    bench = load_bench("seed_parity")
    result = {
        "row": "resnet_wide",
        "run_id": "a" * 32,
        "test_accuracy": 0.8486,
        "wall_seconds": 600.0,
        "peak_rss_mib": 1895.0,
        "epochs": 35,
        "status": "succeeded",
    }
    segment = {"row": "resnet_wide", "wall_seconds": 120.0, "peak_rss_mib": 1700.0, "sets": []}
    bench.append_jsonl(tmp_path / "results.jsonl", result | {"ended_at": "2026-12-04T22:00:00"})
    bench.append_jsonl(  # abandoned before the result
        tmp_path / "segments.jsonl", segment | {"run_id": "b" * 32, "ended_at": "2026-12-01"}
    )
    bench.main(["--table", "--only", "resnet_wide", "--workdir", str(tmp_path)])
    _, table = markdown_table(capsys.readouterr().out)
    assert "84.86%" in table["resnet_wide"] and "in progress" not in table["resnet_wide"]

    bench.append_jsonl(
        tmp_path / "segments.jsonl", segment | {"run_id": "c" * 32, "ended_at": "2026-12-07T18:00"}
    )
    bench.main(["--table", "--only", "resnet_wide", "--workdir", str(tmp_path)])
    _, table = markdown_table(capsys.readouterr().out)
    line = table["resnet_wide"]
    assert "84.86%" in line and "succeeded; a newer run in progress" in line
    assert f"--resume {'c' * 32}" in line and "b" * 32 not in line

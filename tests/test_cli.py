"""The CLI surface: fast help without TensorFlow, every command listed, errors exit cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from cifar_ops.cli import app
from tests.conftest import REPO

COMMANDS = [
    "run", "evaluate", "predict", "validate", "submit", "status", "logs", "cancel",
    "runs", "report", "export", "db", "forget-metrics",
]  # fmt: skip


def test_help_lists_every_command(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from cifar_ops.cli import app; from typer.testing import CliRunner;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('tensorflow', 'keras', 'sqlalchemy', 'kubernetes', 'pandas')"
        " if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"


def test_console_script_answers() -> None:
    exe = REPO / ".venv" / "bin" / "cifar-ops"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cifar_ops"]
    out = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("cifar-ops ")


def test_validate_prints_json_for_a_search(cli_runner: CliRunner) -> None:
    grid = REPO / "jobs/configs/grids/conv4_sgd.yaml"
    result = cli_runner.invoke(app, ["validate", "--config", str(grid), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["kind"] == "search"
    assert payload["experiment"] == "conv4-sgd-grid"
    assert len(payload["trials"]) == 24


def test_bad_config_exits_2_with_one_clear_message(cli_runner: CliRunner, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nmodel: {name: vgg10}\ntrain: {epochs: -1}\n")
    result = cli_runner.invoke(app, ["validate", "--config", str(bad)])
    assert result.exit_code == 2
    assert "train.epochs" in result.output and str(bad) in result.output
    assert "Traceback" not in result.output

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


def test_paths_are_printed_verbatim_never_read_as_markup(cli_runner: CliRunner, tmp_path) -> None:
    folder = tmp_path / "a[red]b[/foo]"  # a directory "a[red]b[" holding "foo]"
    folder.mkdir(parents=True)
    config = folder / "c[bold].yaml"
    config.write_text((REPO / "jobs/configs/simple_cnn.yaml").read_text())
    result = cli_runner.invoke(app, ["validate", "--config", str(config)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert f"valid {config}: run simple-cnn" in result.output


def test_every_error_is_one_line_beginning_error(cli_runner: CliRunner, tmp_path) -> None:
    cases = [
        (["validate", "--config", str(tmp_path / "none[red].yaml")], "none[red].yaml"),
        (["run", "--config", "x.yaml", "--run-id", "bad"], "--run-id"),
        (["report"], "RUN_ID... or --experiment"),
        (["runs", "list", "--bogus"], "--bogus"),
        (["nonsense"], "nonsense"),
    ]
    for args, named in cases:
        result = cli_runner.invoke(app, args, terminal_width=400)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
        assert named in lines[0], (args, result.output)

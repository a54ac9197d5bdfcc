"""The README's quick start and the Makefile/CI agree: two commands do all set-up."""

from __future__ import annotations

import re

from tests.conftest import REPO


def quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "the quick start has a code block"
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_quickstart_is_exactly_two_make_commands() -> None:
    commands = quickstart_commands()
    assert commands == ["make quickstart", "make test"]


def test_makefile_implements_both_and_ci_calls_the_test_command() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("quickstart", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M), ".ci/run calls `make test`"


def test_quickstart_runs_the_fast_config_on_the_embedded_default() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "QUICKSTART_CONFIG ?= jobs/configs/fast.yaml" in makefile
    script = (REPO / "scripts" / "quickstart.sh").read_text()
    assert "CIFAR_OPS_DATABASE_URL" not in script, "quick start uses the SQLite default"

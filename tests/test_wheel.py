"""The wheel a user installs, not the editable checkout: it carries the migrations, alembic.ini
and the Helm chart, and its `cifar-ops` upgrades a warehouse, trains and renders a submission
with no source tree in reach.

The wheel is built from a copy of the working tree (so no stale build/ leaks into it) and
installed into a fresh venv outside the repository. That venv sees the project venv's
third-party packages through a .pth path entry, so TensorFlow is not installed twice; the
editable cifar_ops is not among them (its hook is a .pth of that site dir, which a plain path
entry does not run), and a test checks which cifar_ops is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cifar_ops.warehouse.migrate import head_revision
from tests.conftest import REPO

pytestmark = pytest.mark.slow

PACKAGED_DIRS = ("cifar_ops/warehouse/migrations", "cifar_ops/charts/cifar-ops")
# the repository paths users know, each a link into the package
LINKS = {
    "migrations": "cifar_ops/warehouse/migrations",
    "alembic.ini": "cifar_ops/warehouse/migrations/alembic.ini",
    "charts/cifar-ops": "cifar_ops/charts/cifar-ops",
}
HELM_BIN = REPO / ".tools" / "bin"
TINY_RUN = {
    "experiment": "wheel",
    "seed": 7,
    "data": {"source": "synthetic", "synthetic_images": 240, "num_classes": 4, "image_size": 16},
    "model": {"name": "simple_cnn", "filters": [8, 16], "dense_units": 16},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "train": {"epochs": 1, "batch_size": 32},
}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    home: Path  # the working directory of every command: no source tree in it

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: int = 300
    ) -> subprocess.CompletedProcess[str]:
        """`cifar-ops ARGS` from the fresh venv, in `home`, with only the given settings."""
        clean = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CIFAR_OPS_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        clean.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{HELM_BIN}{os.pathsep}{clean['PATH']}",
            HOME=str(self.home),
            TF_CPP_MIN_LOG_LEVEL="3",
            CIFAR_OPS_ARTIFACTS=str(self.home / "runs"),
            CIFAR_OPS_DATA_CACHE=str(self.home / "cache"),
            **(env or {}),
        )
        return subprocess.run(
            [str(self.venv / "bin" / "cifar-ops"), *args],
            cwd=self.home,
            env=clean,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _copy_working_tree(destination: Path) -> None:
    """The files git tracks or would track (links kept as links): what a fresh clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    source, dist, venv, home = (root / n for n in ("src", "dist", "venv", "home"))
    _copy_working_tree(source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("cifar_ops-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    home.mkdir()
    yield Installed(wheel=wheel, venv=venv, home=home)


def test_repository_paths_link_into_the_package() -> None:
    for link, target in LINKS.items():
        path = REPO / link
        assert path.is_symlink(), f"{link} must link to {target}"
        assert path.resolve() == (REPO / target).resolve()


def test_helm_follows_the_linked_chart_directory() -> None:
    def render(chart: Path) -> str:
        result = subprocess.run(
            [str(HELM_BIN / "helm"), "template", "probe", str(chart)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    linked = render(REPO / "charts" / "cifar-ops")
    assert "kind: Job" in linked
    assert linked == render(REPO / "cifar_ops" / "charts" / "cifar-ops")


def test_wheel_holds_the_migrations_and_chart_as_real_files(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        entries = {info.filename: info for info in wheel.infolist()}
    for directory in PACKAGED_DIRS:
        expected = {
            path.relative_to(REPO).as_posix()
            for path in (REPO / directory).rglob("*")
            if path.is_file() and path.name != ".gitkeep" and "__pycache__" not in path.parts
        }
        assert expected, directory
        missing = expected - set(entries)
        assert not missing, f"the wheel lacks {sorted(missing)}"
    for name in (
        "cifar_ops/warehouse/migrations/alembic.ini",
        "cifar_ops/charts/cifar-ops/Chart.yaml",
    ):
        mode = entries[name].external_attr >> 16
        assert not stat.S_ISLNK(mode) and entries[name].file_size > 0, name


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    found = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import cifar_ops; print(cifar_ops.__file__)",
        ],
        cwd=installed.home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found).is_relative_to(installed.venv), found
    assert not Path(found).is_relative_to(REPO)


@pytest.mark.postgres
def test_db_upgrade_on_sqlite_and_postgres(installed: Installed, postgres_url: str) -> None:
    sqlite_url = f"sqlite:///{installed.home / 'wheel-warehouse.db'}"
    for url in (sqlite_url, postgres_url):
        env = {"CIFAR_OPS_DATABASE_URL": url}
        upgraded = installed.run("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        current = installed.run("db", "current", env=env)
        assert current.returncode == 0, current.stderr
        head = head_revision()  # the source tree's newest migration, which the wheel applied
        assert f"revision {head}, head {head} (up to date)" in current.stdout, current.stdout


def test_one_epoch_synthetic_run(installed: Installed) -> None:
    config = installed.home / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    url = f"sqlite:///{installed.home / 'run-warehouse.db'}"
    result = installed.run(
        "run", "--config", str(config), "--json", env={"CIFAR_OPS_DATABASE_URL": url}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded"
    assert Path(payload["model_path"]).is_file()


def test_submit_dry_run_renders_the_packaged_chart(installed: Installed) -> None:
    configs = installed.home / "configs"
    shutil.copytree(REPO / "jobs" / "configs", configs, dirs_exist_ok=True)
    grid = configs / "grids" / "conv4_sgd.yaml"
    result = installed.run("submit", "--config", str(grid), "--dry-run", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["dry_run"] is True and len(payload["runs"]) == 24
    assert payload["job"] in payload["manifests"] and "kind: Job" in payload["manifests"]
    assert not (installed.home / "cifar-ops.db").exists()

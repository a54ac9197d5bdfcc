"""The real `helm` binary: `helm template` for dry runs, `helm upgrade --install` to submit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from cifar_ops.errors import SubmitError

TOOLS_BIN = Path(".tools") / "bin"  # where `make tools` puts helm, relative to the checkout


def packaged_chart() -> Path:
    """The chart shipped inside the package (cifar_ops/charts/cifar-ops)."""
    chart = resources.files("cifar_ops") / "charts" / "cifar-ops"
    if not isinstance(chart, Path):
        raise SubmitError(
            f"the packaged Helm chart is not a directory on disk ({chart}): set CIFAR_OPS_CHART "
            "to a copy of charts/cifar-ops"
        )
    return chart


def chart_dir() -> Path:
    """The chart: `CIFAR_OPS_CHART`, else the one shipped in the package."""
    override = os.environ.get("CIFAR_OPS_CHART")
    chart = Path(override) if override else packaged_chart()
    if not (chart / "Chart.yaml").is_file():
        raise SubmitError(
            f"no Helm chart at {chart}: set CIFAR_OPS_CHART to the charts/cifar-ops directory"
        )
    return chart


def find_helm() -> str:
    """`helm` from PATH, else .tools/bin/helm when run from a checkout that ran `make tools`."""
    found = shutil.which("helm") or shutil.which("helm", path=str(TOOLS_BIN))
    if not found:
        raise SubmitError(
            "the helm binary is not on PATH: install Helm 3.8+ (https://helm.sh/docs/intro/install/)"
            " or run `make tools`"
        )
    return found


def build_command(
    verb: list[str],
    release: str,
    chart: Path,
    values_file: Path,
    namespace: str | None,
) -> list[str]:
    """The helm argument list (without the binary) for `template` or `upgrade --install`."""
    command = [*verb, release, str(chart), "--values", str(values_file)]
    if namespace:
        command += ["--namespace", namespace]
    return command


def template(release: str, values: dict[str, Any], namespace: str | None) -> str:
    """Render the chart's manifests (no cluster needed); bad values fail with helm's message."""
    return _run(["template"], release, values, namespace)


def upgrade_install(release: str, values: dict[str, Any], namespace: str | None) -> str:
    """Install or upgrade the experiment's release; returns helm's output (NOTES.txt)."""
    return _run(["upgrade", "--install"], release, values, namespace)


def _run(verb: list[str], release: str, values: dict[str, Any], namespace: str | None) -> str:
    helm = find_helm()
    chart = chart_dir()
    with tempfile.TemporaryDirectory(prefix="cifar-ops-helm-") as tmp:
        values_file = Path(tmp) / "values.json"
        values_file.write_text(json.dumps(values))
        command = [helm, *build_command(verb, release, chart, values_file, namespace)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise SubmitError(f"`helm {' '.join(verb)}` timed out after 300 s") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise SubmitError(f"`helm {' '.join(verb)} {release}` failed: {detail}")
    return result.stdout

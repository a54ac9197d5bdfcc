"""Connecting to the cluster with the official `kubernetes` client; its errors as SubmitError."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cifar_ops.errors import SubmitError

_IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
T = TypeVar("T")


def kubeconfig_paths() -> list[Path]:
    """The kubeconfig files kubectl would read: $KUBECONFIG (colon-separated) or ~/.kube/config."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and _IN_CLUSTER_NAMESPACE.exists()


def require_kubeconfig(hint: str = "") -> None:
    """Fail early, before anything is written, when no cluster is configured."""
    if in_cluster() or any(path.is_file() for path in kubeconfig_paths()):
        return
    shown = ", ".join(str(p) for p in kubeconfig_paths())
    raise SubmitError(
        f"no kubeconfig found ({shown}): set KUBECONFIG to your cluster's kubeconfig file{hint}"
    )


def _kubeconfig_argument() -> str:
    """The client reads $KUBECONFIG once, at import: pass the current value every time."""
    return os.pathsep.join(str(path) for path in kubeconfig_paths())


@dataclass
class Cluster:
    """API clients of one cluster and the namespace commands act in."""

    api_client: Any  # kubernetes.client.ApiClient
    namespace: str

    @property
    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api_client)

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)


def connect(namespace: str | None = None) -> Cluster:
    """Load the kubeconfig (or the in-cluster config) and pick the namespace."""
    from kubernetes import client, config

    if in_cluster():
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        default_namespace = _IN_CLUSTER_NAMESPACE.read_text().strip()
        return Cluster(client.ApiClient(configuration), namespace or default_namespace)
    require_kubeconfig()
    files = _kubeconfig_argument()
    try:
        api_client = config.new_client_from_config(config_file=files)
        _, active = config.list_kube_config_contexts(config_file=files)
    except config.ConfigException as exc:
        raise SubmitError(f"cannot use the kubeconfig: {exc}") from None
    context_namespace = (active or {}).get("context", {}).get("namespace")
    return Cluster(api_client, namespace or context_namespace or "default")


def kubeconfig_namespace() -> str | None:
    """The current context's namespace (what helm uses when no --namespace is given)."""
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=_kubeconfig_argument())
    except (config.ConfigException, OSError):
        return None
    return (active or {}).get("context", {}).get("namespace")


@contextmanager
def api_errors(action: str) -> Iterator[None]:
    """Turn the client's API and connection errors into one-line `SubmitError`s."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        hint = " (check RBAC: the chart's Role lists what is needed)" if exc.status == 403 else ""
        raise SubmitError(
            f"Kubernetes API refused to {action}: {exc.status} {exc.reason}{hint}"
        ) from None
    except HTTPError as exc:
        raise SubmitError(f"cannot reach the Kubernetes API to {action}: {exc}") from None


def call(action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One API call under `api_errors`."""
    with api_errors(action):
        return fn(*args, **kwargs)

"""One way to get an API client, in a pod and on a laptop alike."""

from __future__ import annotations

import logging
import os

import kubernetes.client
import kubernetes.config

from homelab_common.k8s.errors import KubeConfigError

__all__ = ["load_client"]

log = logging.getLogger(__name__)


def load_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """Return a client for the cluster this process is meant to manage.

    In a pod (``KUBERNETES_SERVICE_HOST`` set, and no explicit ``kubeconfig``) the service account is used;
    otherwise the kubeconfig at ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``. The client is
    returned rather than installed as the library-wide default so tests and tools can hold several.
    """
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException as exc:
            raise KubeConfigError(
                f"running in a pod (KUBERNETES_SERVICE_HOST is set) but the service-account credentials "
                f"could not be loaded: {exc}. Check that the pod mounts its service-account token "
                "(automountServiceAccountToken is not false)."
            ) from exc
        log.info("kubernetes client configured", extra={"source": "in-cluster", "host": config.host})
        return kubernetes.client.ApiClient(config)

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=config
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise KubeConfigError(
            f"no Kubernetes credentials: not running in a pod (KUBERNETES_SERVICE_HOST is unset) and the "
            f"kubeconfig {path!r} could not be loaded ({exc}). Pass a kubeconfig path, set KUBECONFIG, or "
            "run `task up` to fetch the cluster's kubeconfig."
        ) from exc
    log.info("kubernetes client configured", extra={"source": "kubeconfig", "path": path, "host": config.host})
    return kubernetes.client.ApiClient(config)

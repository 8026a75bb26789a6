"""Kubernetes credentials for the three cluster entry points (agent, operator, drain command):
the pod's service account when running in a cluster, else the user's kubeconfig."""

from __future__ import annotations

from socksplice.errors import PermanentError


def load() -> None:
    """Configure the ``kubernetes`` client; PermanentError (with the reason) when there are none."""
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise PermanentError(f"no Kubernetes credentials: {exc}") from exc

"""The one Kubernetes client adaptor of the operator, the node agent and the drain command.

``credentials.load`` configures the ``kubernetes`` client (service account, else kubeconfig);
``calls.Kube`` makes the few calls the roles need and returns the API's camelCase JSON as plain
dicts (the shapes the pure functions and the recorded test objects use). ``ApiException`` never
leaves this package: ``failures.converted`` turns it into the project's errors at the boundary,
keeping the status code and the object in the message. Absent objects are ``None`` where a
caller expects them to be missing; creating what exists and deleting what is gone succeed.
"""

from __future__ import annotations

from socksplice.kubeapi.calls import Kube, WatchEvent
from socksplice.kubeapi.credentials import load
from socksplice.kubeapi.failures import Gone, converted

__all__ = ["Gone", "Kube", "WatchEvent", "converted", "load"]

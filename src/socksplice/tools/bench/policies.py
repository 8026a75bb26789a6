"""The SocketSplices the bench applies: one per TCP path beside plain (no SocketSplice).

``spliced``: mode SpliceRelaxedReceive, every connection between the two pods spliced.
``auto``: mode Auto with a short evidence window (one connection, one second) and the default
minMessagesPerConnection (4), so that one audit pass decides a workload's endpoint, the cost
rule included. Kept here as text (the same YAML a user would ``kubectl apply``).
"""

from __future__ import annotations

_POLICY = """\
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata:
  name: bench
  namespace: demo
spec:
  podSelector:
    matchLabels:
      role: bench
"""

SPLICED = _POLICY + "  mode: SpliceRelaxedReceive\n"
AUTO_WINDOW_S = 1.0
"""evidenceWindow.seconds of :data:`AUTO`."""
AUTO = (
    _POLICY
    + """\
  mode: Auto
  auto:
    evidenceWindow: {connections: 1, seconds: 1}
    minMessagesPerConnection: 4
"""
)

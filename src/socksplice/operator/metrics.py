"""Operator metrics: reconciles by kind and result. A fresh registry per operator (tests make their own)."""

from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.registry import CollectorRegistry


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconciles = Counter(
            "socksplice_operator_reconciles",
            "Reconciles of socksplice objects by kind and result (ok, invalid, error).",
            ["kind", "result"],
            registry=self.registry,
        )

    def count(self, kind: str, result: str) -> None:
        self.reconciles.labels(kind=kind, result=result).inc()

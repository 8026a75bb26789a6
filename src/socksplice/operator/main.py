"""``socksplice operator``: run the kopf operator (SocketSplice status, SpliceBenchmark runs).

Serves kopf's liveness endpoint (``/healthz``) and Prometheus metrics. Watches every namespace
unless ``--namespace`` is given (repeatable). Credentials: in-cluster service account, else
``KUBECONFIG`` / ``~/.kube/config``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from socksplice import kubeapi
from socksplice.errors import SockspliceError

log = logging.getLogger("socksplice.operator")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="socksplice operator", description=__doc__)
    p.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    p.add_argument("--liveness-port", type=int, default=8080, help="port of /healthz (default: %(default)s)")
    p.add_argument("--metrics-port", type=int, default=9751, help="port of /metrics; -1 disables")
    p.add_argument("--host", default="0.0.0.0", help="address the endpoints listen on")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import kopf
    from prometheus_client import start_http_server

    from socksplice.operator import handlers

    try:
        kubeapi.load()
    except SockspliceError as exc:
        log.error("operator: %s", exc)
        return 1
    if args.metrics_port >= 0:
        start_http_server(args.metrics_port, args.host, registry=handlers.METRICS.registry)
    log.info("operator: starting; liveness on %s:%d/healthz", args.host, args.liveness_port)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=f"http://{args.host}:{args.liveness_port}/healthz",
        standalone=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

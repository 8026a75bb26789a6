"""kopf settings under the project's own annotation prefix, not kopf's defaults.

The finalizer is ``socksplice.io/finalizer``; handler progress and the last-handled
configuration live in ``socksplice.io/...`` annotations, so ``kubectl get -o yaml`` shows whose
they are and a second kopf operator in the cluster never mistakes them for its own.
"""

from __future__ import annotations

from typing import Any

import kopf

from socksplice.api.socketsplice import GROUP

FINALIZER = f"{GROUP}/finalizer"
PREFIX = GROUP
DIFFBASE_KEY = "last-handled-configuration"


def configure(settings: Any) -> None:
    """Apply socksplice's persistence and logging choices to a ``kopf.OperatorSettings``."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key=DIFFBASE_KEY, ignored_fields=["status"]
    )
    # logging.INFO: kopf.info and kopf.warn post Events; object log lines do not (posting.loggers is off)
    settings.posting.level = 20
    settings.watching.server_timeout = 300
    settings.peering.standalone = True

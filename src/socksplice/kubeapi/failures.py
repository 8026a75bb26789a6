"""``ApiException`` (and the client's connection errors) into the project's error vocabulary.

A 404 is not an error here: calls that expect an object to be missing turn it into ``None``
before this runs. 5xx, 429 (throttled), 409 (conflict) and connection failures may pass on
retry: ``TemporaryError``. 410 on a watch is ``Gone`` (list again). Other 4xx (403 forbidden,
422 invalid, 400) fail the same way every time: ``PermanentError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from socksplice.errors import PermanentError, SockspliceError, TemporaryError

NOT_FOUND = 404
CONFLICT = 409
GONE = 410
TEMPORARY = frozenset({408, 409, 429})


class Gone(TemporaryError):
    """A watch's resourceVersion is too old (HTTP 410): list again, then watch from the new one."""


def _detail(exc: ApiException) -> str:
    """``403 Forbidden: <the API's message>`` (the Status object's message when there is one)."""
    message = ""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or "")
    except (TypeError, ValueError, AttributeError):
        message = ""
    head = f"{exc.status} {exc.reason or ''}".strip()
    return f"{head}: {message}" if message else head


def error_of(what: str, exc: ApiException) -> SockspliceError:
    """The project's error for an API failure of ``what`` (``get SpliceNode node-a``)."""
    text = f"{what}: {_detail(exc)}"
    status = int(exc.status or 0)
    if status == GONE:
        return Gone(text)
    if status == 0 or status >= 500 or status in TEMPORARY:
        return TemporaryError(text)
    return PermanentError(text)


@contextmanager
def converted(what: str) -> Iterator[None]:
    """Run an API call; ``ApiException`` and connection errors leave as socksplice errors."""
    try:
        yield
    except ApiException as exc:
        raise error_of(what, exc) from exc
    except (HTTPError, OSError) as exc:
        raise TemporaryError(f"{what}: API server not reachable: {exc}") from exc

"""The project's small error vocabulary.

Every error says whether retrying can help. Foreign exceptions (bcc's bare ``Exception``,
pyroute2's ``NetlinkError``, ``OSError``) are converted at the boundary where they occur, with
the object and the cause kept in the message and in ``__cause__``.
"""

from __future__ import annotations


class SockspliceError(Exception):
    """Base of every error socksplice raises on purpose."""


class PermanentError(SockspliceError):
    """Retrying the same operation will fail the same way; a human must change something."""


class TemporaryError(SockspliceError):
    """The operation may succeed later, with nothing changed by a human."""


class InvalidSpec(PermanentError):
    """A manifest or spec is malformed. ``field`` is a JSON-path-like location (``spec.ports[0]``)."""

    def __init__(self, field: str, message: str, source: str = "") -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")
        self.field = field
        self.reason = message
        self.source = source


class KernelUnsupported(PermanentError):
    """This kernel lacks something the data path needs; the message names it and the fix."""


class KernelError(SockspliceError):
    """A kernel operation failed; ``errno`` is kept when known."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

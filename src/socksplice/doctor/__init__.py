"""``socksplice doctor``: can this node splice, and if not, what to do about it."""

from socksplice.doctor.checks import Check, fatal, preflight, run_checks
from socksplice.doctor.report import exit_code, main, render_json, render_text

__all__ = ["Check", "exit_code", "fatal", "main", "preflight", "render_json", "render_text", "run_checks"]

"""``socksplice kernel-matrix [--kernels 6.1,6.12,running] [--full] [--json] [--markdown FILE]``.

Exit status: 0 when every kernel passed, 1 when any failed (each failure names its kernel),
2 when the matrix itself could not run (no qemu, no debootstrap: see scripts/kernel-matrix-install.sh).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from socksplice.tools.matrix import booting, image, kernels, report
from socksplice.tools.matrix.errors import MatrixError

log = logging.getLogger("socksplice.tools.matrix")
BOOT_TIMEOUT = 3600.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="socksplice kernel-matrix", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--kernels",
        default=",".join(kernels.DEFAULT_KERNELS),
        help=f"comma-separated: {', '.join(kernels.LINES)}, {kernels.RUNNING} (default: %(default)s)",
    )
    p.add_argument("--full", action="store_true", help="every kernel test and the full conformance suite")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--markdown", type=Path, metavar="FILE", help="write the report as markdown (docs/kernels.md)"
    )
    p.add_argument(
        "--cache", type=Path, default=image.DEFAULT_CACHE, help="image cache (default: %(default)s)"
    )
    p.add_argument(
        "--project", type=Path, default=Path.cwd(), help="the project checkout to run (default: %(default)s)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="guests booted side by side (default: %(default)s; 2 halves the wall time on 2 cores, but the "
        "slower guests then send before pairing completes and the data-path tests' byte counts fail)",
    )
    p.add_argument(
        "--timeout", type=float, default=BOOT_TIMEOUT, help="seconds per kernel (default: %(default)s)"
    )
    return p


def run_running(project: Path, full: bool) -> report.Result:
    """The running kernel, checked in place by the same module as the guests."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="socksplice-matrix-") as tmp:
        out = Path(tmp, "checks.json")
        cmd = [
            sys.executable,
            "-m",
            "socksplice.tools.matrix.checks",
            "--out",
            str(out),
            "--project",
            str(project),
        ]
        subprocess.run([*cmd, *(["--full"] if full else [])], cwd=project, check=False, capture_output=True)
        if not out.exists():
            return {"kernel": kernels.RUNNING, "where": "host", "error": "checks wrote no results"}
        doc = json.loads(out.read_text())
    seconds = time.monotonic() - start
    return {
        "kernel": kernels.RUNNING,
        "release": doc["release"],
        "where": "host",
        "seconds": seconds,
        "checks": doc,
    }


def run_matrix(
    names: list[str], project: Path, full: bool, cache: Path, timeout: float, jobs: int = 1
) -> tuple[list[report.Result], dict[str, float]]:
    timings: dict[str, float] = {}
    resolved = [kernels.resolve(n) for n in names if n != kernels.RUNNING]
    img = None
    if resolved:
        start = time.monotonic()
        img = image.ensure_image(cache, resolved, project / "pyproject.toml")
        timings["image"] = time.monotonic() - start
    by_name = {k.name: k for k in resolved}
    args = ["--full"] if full else []

    def one(name: str) -> report.Result:
        if name == kernels.RUNNING:
            return run_running(project, full)
        k = by_name[name]
        assert img is not None
        try:
            b = booting.boot(k, img, project, args, timeout)
        except MatrixError as exc:
            return {"kernel": name, "release": k.release, "where": "qemu", "error": str(exc)}
        return {
            "kernel": name,
            "release": k.release,
            "where": "qemu",
            "seconds": b.seconds,
            "checks": b.results,
        }

    # Guests run ``jobs`` at a time (each is mostly one busy TCG thread); the running kernel goes
    # last, alone, so its own tests do not compete with the guests.
    guests = [n for n in names if n != kernels.RUNNING]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(guests) or 1))) as pool:
        done = dict(zip(guests, pool.map(one, guests), strict=True))
    if guests:
        timings[f"all guests ({jobs} at a time)"] = time.monotonic() - start
    if kernels.RUNNING in names:
        done[kernels.RUNNING] = one(kernels.RUNNING)
    results = [done[n] for n in names]
    for r in results:
        timings[r["kernel"]] = float(r.get("seconds", 0.0))
        log.info("matrix: %s: %s", r["kernel"], "ok" if not report.failures(r) else "FAILED")
    return results, timings


def describe_timings(timings: dict[str, float]) -> str:
    parts = [f"image (build or cache check): {timings.get('image', 0):.0f} s"] if "image" in timings else []
    parts += [f"{k}: {v:.0f} s" for k, v in timings.items() if k != "image"]
    return "Wall time of this run: " + "; ".join(parts) + "."


def check_project(project: Path) -> None:
    """The matrix runs a checkout's tests inside each kernel: refuse a tree without them."""
    if not (project / "tests" / "kernel").is_dir() or not (project / "pyproject.toml").is_file():
        raise MatrixError(
            f"{project} is not a socksplice checkout (no tests/kernel or pyproject.toml): "
            "run from the checkout or pass --project DIR"
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = "socksplice kernel-matrix " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        names = kernels.parse_kernels(args.kernels)
        check_project(args.project)
        results, timings = run_matrix(
            names, args.project.resolve(), args.full, args.cache, args.timeout, args.jobs
        )
    except MatrixError as exc:
        print(f"socksplice kernel-matrix: {exc}", file=sys.stderr)
        return 2
    if args.markdown:
        args.markdown.write_text(report.render_markdown(results, command.strip(), describe_timings(timings)))
    print(report.render_json(results, command.strip()) if args.json else report.render_text(results), end="")
    if not args.json:
        print(describe_timings(timings))
    return 1 if any(report.failures(r) for r in results) else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sys.exit(main())

"""Every command as the image's default user, and doctor with the chart's capabilities.

- As uid 65532 (no root, no capabilities) each CLI command exits non-zero with a one-line
  reason on stderr, never a traceback.
- As root with the bounding set limited to the chart's ``agent.capabilities`` (no
  CAP_DAC_OVERRIDE, so the cgroup2 root, mode 0555, cannot be written) the preflight checks the
  agent runs at start pass, and nothing is left in the cgroup2 root or attached at it.

Needs root, BPF, cgroup v2, util-linux ``setpriv``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from socksplice.cli import NEEDS_ROOT, PASSTHROUGH
from socksplice.doctor.probes import DOCTOR_CGROUP_PREFIX
from socksplice.kernel import bpfsys, cgroup2

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"),
]

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "charts" / "socksplice" / "values.yaml"
SOCKSPLICE = [sys.executable, "-m", "socksplice.cli"]
AS_NOBODY = ["setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups"]
COMMANDS = sorted({"demo", "agent", *PASSTHROUGH})


def chart_capabilities() -> list[str]:
    values = yaml.safe_load(VALUES.read_text())
    return [str(c).lower() for c in values["agent"]["capabilities"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_as_uid_65532_fails_in_one_line(command: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    done = subprocess.run(
        [*AS_NOBODY, *SOCKSPLICE, command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "absent")},
        timeout=120,
    )
    err = done.stderr.strip()
    assert done.returncode != 0, (command, done.stdout, err)
    assert "Traceback" not in err + done.stdout
    reason = err.splitlines()[-1]  # argparse's usage may come first; long-running roles log it
    assert f"socksplice {command}:" in reason or f" {command}: " in reason, err
    if command in NEEDS_ROOT:
        assert err == reason and "not root (euid 65532)" in reason


def test_preflight_passes_with_the_charts_capabilities_and_leaves_nothing() -> None:
    caps = chart_capabilities()
    assert "dac_override" not in caps
    code = "from socksplice.doctor import preflight; import sys; " + (
        "c = preflight(); print('\\n'.join(f'{x.name} {x.ok} {x.detail}' for x in c)); "
        "sys.exit(0 if all(x.ok for x in c) else 1)"
    )
    bounding = f"--bounding-set=-all,{','.join('+' + c for c in caps)}"
    done = subprocess.run(
        ["setpriv", "--inh-caps=-all", bounding, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no cgroup created" in done.stdout
    root = cgroup2.find_root()
    assert not list(root.glob(f"{DOCTOR_CGROUP_PREFIX}*"))
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        before = bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS)
    finally:
        os.close(fd)
    assert before == [], "doctor left a sockops program attached at the cgroup2 root"

"""A normal install carries every file the commands read: the wheel built from this checkout,
installed (not editable) into a fresh virtual environment, holds every non-Python file of the
package, and the commands that read package data run from it.

Building needs setuptools and wheel from the configured package index (pip's build isolation).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "socksplice"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(wheel, fresh venv with it installed); dependencies come from this venv via PYTHONPATH."""
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work / "dist"), str(tree)], check=True, timeout=600)
    (wheel,) = (work / "dist").glob("socksplice-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", str(wheel)], check=True)
    yield wheel, venv


def run_installed(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Dependencies (and Debian's bcc) from this venv; PYTHONPATH does not process its .pth
    # files, so the checkout's editable socksplice stays out and the wheel's is imported.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    return subprocess.run(
        [str(venv / "bin" / "python"), *args], capture_output=True, text=True, env=env, cwd=venv, timeout=300
    )


def test_the_wheel_holds_every_package_file(installed: tuple[Path, Path]) -> None:
    wheel, _venv = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        str(p.relative_to(ROOT / "src"))
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert wanted - names == set(), "files of src/socksplice missing from the wheel"


def test_commands_read_package_data_from_the_installed_wheel(installed: tuple[Path, Path]) -> None:
    _wheel, venv = installed
    code = (
        "import socksplice, yaml\n"
        "from socksplice.bpf.programs import program_source\n"
        "from socksplice.tools.demo.running import SAMPLE\n"
        "print(socksplice.__file__)\n"
        "assert 'ss_sk_msg' in program_source()\n"
        "assert yaml.safe_load(SAMPLE.read_text())['kind'] == 'SocketSplice'\n"
    )
    done = run_installed(venv, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(venv)), done.stdout
    version = run_installed(venv, "-m", "socksplice.cli", "--version")
    assert version.returncode == 0 and version.stdout.startswith("socksplice "), version.stderr


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="doctor's data-path load needs root")
def test_doctor_loads_the_data_path_from_the_installed_wheel(installed: tuple[Path, Path]) -> None:
    _wheel, venv = installed
    done = run_installed(venv, "-m", "socksplice.cli", "doctor", "--json")
    assert "Traceback" not in done.stderr
    assert '"name": "datapath.load"' in done.stdout
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

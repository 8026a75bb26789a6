"""The Dockerfile and scripts/install.sh stay in step (there is no container engine here, so the
image is checked statically): the image installs through the script, keeps no second package
list, copies everything the script needs, passes only settings the script reads, and runs as a
non-root user that matches the chart."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL = ROOT / "scripts" / "install.sh"
BOOTSTRAP: set[str] = set()
"""Packages the image needs before install.sh can run its venv step (install.sh assumes python3 -m
venv works). Everything else comes from install.sh's APT_PACKAGES."""


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comment lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> list[Stage]:
    result: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            result.append(Stage(base.strip(), name.strip()))
        elif result:
            result[-1].instructions.append((keyword, rest))
    return result


def apt_list(name: str) -> set[str]:
    text = INSTALL.read_text()
    block = re.search(rf"^{name}=\((.*?)^\)", text, re.S | re.M)
    assert block, f"{name}=( ... ) not found in install.sh"
    words = [line.split("#", 1)[0].split() for line in block.group(1).splitlines()]
    return {w for ws in words for w in ws}


def apt_packages() -> set[str]:
    """Every package an image stage installs: the runtime list and the build list."""
    return apt_list("APT_PACKAGES") | apt_list("APT_BUILD_PACKAGES")


def dockerfile_apt_installs() -> set[str]:
    pkgs: set[str] = set()
    for stage in stages():
        for run in stage.args("RUN"):
            for m in re.finditer(r"apt-get install ([^&;|]+)", run):
                pkgs.update(w for w in m.group(1).split() if not w.startswith("-"))
    return pkgs


def test_install_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)


def test_every_stage_installs_through_the_script() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: build and runtime"
    for stage in all_stages:
        assert any("bash scripts/install.sh" in run for run in stage.args("RUN")), stage.name


def test_no_second_package_list() -> None:
    listed = apt_packages()
    assert {"python3-bpfcc", "linux-headers-amd64", "sockperf", "iperf3"} <= listed
    installed_by_dockerfile = dockerfile_apt_installs()
    assert installed_by_dockerfile <= BOOTSTRAP, installed_by_dockerfile - BOOTSTRAP
    assert not installed_by_dockerfile & listed, "already in install.sh's APT_PACKAGES: drop it here"
    text = DOCKERFILE.read_text()
    for pkg in listed:
        assert not re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", text), f"{pkg} named in the Dockerfile"


def test_runtime_packages_carry_no_toolchain_and_the_tools_the_commands_run() -> None:
    runtime = apt_list("APT_PACKAGES")
    assert {"procps", "iproute2", "iptables", "python3-bpfcc"} <= runtime  # sysctl, ip, iptables, bcc
    toolchain = {"gcc", "make", "libc6-dev", "binutils", "clang", "linux-headers-amd64"}
    assert not runtime & toolchain, "the runtime stage carries no compiler (bcc has its own clang)"
    assert toolchain - {"binutils", "clang"} <= apt_list("APT_BUILD_PACKAGES")


def stage_setting(stage: Stage, name: str) -> str | None:
    for run in stage.args("RUN"):
        m = re.search(rf"\b{name}=(\S+)", run)
        if m:
            return m.group(1)
    return None


def test_each_stage_runs_its_own_part_of_the_script() -> None:
    build, runtime = stages()[0], stages()[-1]
    assert stage_setting(build, "SOCKSPLICE_STAGE") == "build"
    assert stage_setting(runtime, "SOCKSPLICE_STAGE") == "runtime"
    copied = runtime.args("COPY")
    assert "--from=build /opt/socksplice/kernel-headers /opt/socksplice/kernel-headers" in copied
    assert not any("/usr/src" in c for c in copied), "the headers are kept once, in /opt"
    script = INSTALL.read_text()
    assert "/opt/socksplice/kernel-headers" in script
    headers_module = ROOT / "src" / "socksplice" / "bpf" / "headers.py"
    assert "/opt/socksplice/kernel-headers" in headers_module.read_text()


def test_bootstrap_is_only_what_the_script_assumes() -> None:
    text = INSTALL.read_text()
    assert '-m venv "$VENV"' in text  # python3-venv is what that needs on a slim base
    assert BOOTSTRAP.isdisjoint(apt_packages()) or not dockerfile_apt_installs(), (
        "install.sh now lists the bootstrap packages: remove the Dockerfile's bootstrap RUN"
    )


def test_the_readme_install_is_the_same_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^install:\n\tbash scripts/install.sh$", makefile, re.M)
    assert "scripts/install.sh" in (ROOT / "README.md").read_text()
    assert "Dockerfile calls this script" in INSTALL.read_text()


def test_settings_passed_to_the_script_are_read_by_it() -> None:
    script = INSTALL.read_text()
    for stage in stages():
        for run in stage.args("RUN"):
            m = re.search(r"((?:\w+=\S+\s+)*)bash scripts/install.sh", run)
            if not m:
                continue
            for assignment in m.group(1).split():
                name = assignment.split("=", 1)[0]
                assert f"${{{name}" in script or f"${name}" in script, f"install.sh ignores {name}"


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, ``!`` re-includes,
    a pattern matching a parent directory matches everything below it."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p.split("/")[-1], pat) for p in prefixes):
            result = not negate
    return result


def test_build_context_holds_what_the_script_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["pyproject.toml", "README.md", "scripts/install.sh", "loadgen/Makefile", "loadgen/sslg.c"]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "src" / "socksplice").rglob("*.py")]
    needed += [str(p.relative_to(ROOT)) for p in (ROOT / "src" / "socksplice" / "bpf").glob("*.[ch]")]
    for path in needed:
        assert not ignored(path, patterns), f"{path} is excluded by .dockerignore"
    for path in (".venv/bin/python", "loadgen/bin/sslg", "tests/unit/test_chart.py", ".git/HEAD"):
        assert ignored(path, patterns), f"{path} should stay out of the build context"
    build = stages()[0]
    copied = " ".join(build.args("COPY"))
    for source in ("pyproject.toml", "README.md", "scripts/install.sh", "loadgen/", "src/"):
        assert source in copied, f"build stage does not COPY {source}"
    readme = re.search(r'^readme = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert readme and readme.group(1) in copied  # pip needs the readme pyproject names


def test_runtime_stage_is_non_root_and_takes_the_build() -> None:
    runtime = stages()[-1]
    assert any(c.startswith("--from=build /opt/socksplice") for c in runtime.args("COPY"))
    (user,) = runtime.args("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    chart_helpers = (ROOT / "charts" / "socksplice" / "templates" / "_helpers.tpl").read_text()
    assert f"runAsUser: {uid}" in chart_helpers  # the operator's pod runs as the image's user
    (entrypoint,) = runtime.args("ENTRYPOINT")
    assert entrypoint == '["socksplice"]'
    env = " ".join(runtime.args("ENV"))
    assert "/opt/socksplice/.venv/bin" in env


@pytest.mark.parametrize("stage_index", [0, -1])
def test_stages_share_the_debian_base(stage_index: int) -> None:
    (arg,) = [a for k, a in instructions(DOCKERFILE.read_text()) if k == "ARG" and a.startswith("BASE=")]
    assert arg == "BASE=debian:12-slim"  # the README's "fresh Debian 12 machine"
    assert stages()[stage_index].base == "${BASE}"


def dpkg_excludes(text: str) -> set[str]:
    """The path-exclude/path-include rules a printf in ``text`` writes to dpkg.cfg.d."""
    rules: set[str] = set()
    for m in re.finditer(r"printf '(path-(?:ex|in)clude=[^'\\]*)\\n' ?([^>]*)>", text):
        pattern, words = m.group(1), m.group(2).split()
        rules.update(pattern.replace("%s", w) for w in words) if "%s" in pattern else rules.add(pattern)
    return rules


def test_runtime_layer_keeps_no_docs_debs_or_apt_lists() -> None:
    runtime = stages()[-1]
    run = next(r for r in runtime.args("RUN") if "bash scripts/install.sh" in r)
    install_at = run.index("bash scripts/install.sh")
    excludes = dpkg_excludes(run[:install_at])  # written before any package lands
    assert {f"path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")} <= excludes
    after = run[install_at:]
    assert "apt-get clean" in after, "downloaded .debs stay in the layer"
    assert "/var/lib/apt/lists/*" in after and "/var/cache/apt/*.bin" in after
    # The local base image carries the same rules, so the base layer is as lean as the runtime's.
    assert dpkg_excludes((ROOT / "scripts" / "image-install.sh").read_text()) == excludes


def test_headers_copy_keeps_what_bcc_includes(tmp_path: Path) -> None:
    """install.sh's copy_headers on trees laid out like Debian's linux-headers-*-{common,amd64}:
    what the package's BPF C reaches by #include (through every search directory, #include_next
    and quoted includes) and the top-level files stay; kbuild, other arches and drivers go."""
    src, copy = tmp_path / "src", tmp_path / "copy"
    common, amd64 = "linux-headers-6.1.0-9-common", "linux-headers-6.1.0-9-amd64"
    files = {
        # bcc's -include, and what it includes from the arch tree's generated headers
        f"{common}/include/linux/kconfig.h": "#include <generated/autoconf.h>\n",
        f"{amd64}/include/generated/autoconf.h": "#define CONFIG_X86 1\n",
        # socksplice.h includes <uapi/linux/bpf.h>, <linux/types.h>, <linux/socket.h>
        f"{common}/include/uapi/linux/bpf.h": '#include <linux/types.h>\n#include "bpf_common.h"\n',
        f"{common}/include/uapi/linux/bpf_common.h": "",
        f"{common}/include/linux/types.h": "#include <asm/types.h>\n#include <uapi/linux/types.h>\n",
        f"{common}/include/uapi/linux/types.h": "",
        f"{common}/arch/x86/include/uapi/asm/types.h": "#include_next <asm/types.h>\n",
        f"{common}/include/uapi/asm-generic/types.h": "",
        f"{amd64}/arch/x86/include/generated/uapi/asm/types.h": "#include <asm-generic/types.h>\n",
        f"{common}/include/linux/socket.h": "#if 0\n#include <linux/uio.h>\n#endif\n",
        f"{common}/include/linux/uio.h": "",  # inside #if 0: kept all the same (a superset)
        f"{common}/Makefile": "",
        f"{amd64}/.config": "CONFIG_X86=y\n",
        f"{amd64}/Makefile": "",
    }
    dropped = {
        f"{amd64}/Module.symvers": "",
        f"{common}/include/sound/core.h": "",
        f"{common}/include/linux/unreached.h": "",
        f"{common}/scripts/Makefile.build": "",
        f"{common}/drivers/net/Kconfig": "",
        f"{common}/arch/arm64/include/asm/types.h": "",
        f"{amd64}/scripts/basic/fixdep": "",
    }
    for rel, text in {**files, **dropped}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    function = re.search(r"^copy_headers\(\) \{.*?^\}", INSTALL.read_text(), re.S | re.M)
    assert function
    script = (
        f"log() {{ :; }}\n{function.group(0)}\n"
        f"HEADERS_SRC={src} HEADERS_COPY={copy} VENV={ROOT / '.venv'}\ncopy_headers\n"
    )
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, capture_output=True)
    left = {str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()}
    assert left == set(files)
    assert (copy / amd64 / ".config").read_text() == "CONFIG_X86=y\n"


def test_what_the_image_deletes_from_the_venv_is_not_imported() -> None:
    build = stages()[0]
    assert any("site-packages/kubernetes/aio" in run for run in build.args("RUN"))
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"kubernetes\.aio|from kubernetes import [^\n]*\baio\b", text), path

"""The ABI of bpf/socksplice.h, compiled by the C compiler, against its Python mirror bpf/layout.py.

A generated C program includes the header's ABI part (``-DSS_ABI_ONLY``) and prints the value of
every constant and counter and the size, and each field's offset and size, of every struct. The
names come from the header itself, so a constant, counter, struct or field added on either side
alone fails here, as does a change of the ABI without a new layout version: the ABI of each
layout version is recorded in tests/unit/fixtures/bpf_abi/v<N>.json. Needs only gcc (installed by
scripts/install.sh); no kernel, no root.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from socksplice.bpf import layout
from socksplice.bpf.programs import SOURCE_DIR

HEADER = SOURCE_DIR / "socksplice.h"
RECORDED = Path(__file__).parent / "fixtures" / "bpf_abi"
COMMENT = re.compile(r"/\*.*?\*/", re.S)


def abi_text() -> str:
    """The header up to its programs-only part, without comments."""
    text = HEADER.read_text()
    return COMMENT.sub("", text[: text.index("#ifndef SS_ABI_ONLY")])


def header_names() -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(defines, members of enum ss_counter then enum ss_evidence in order, struct name -> field names)."""
    text = abi_text()
    defines = re.findall(r"^#define (SS_\w+)\s+\S", text, re.M)
    counters = [
        name
        for enum in ("ss_counter", "ss_evidence")
        for body in re.findall(rf"enum {enum} \{{(.*?)\}};", text, re.S)
        for name in re.findall(r"\b(SS_\w+)\b", body)
    ]
    structs = {
        name: re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*;", body)
        for name, body in re.findall(r"struct (ss_\w+) \{(.*?)\};", text, re.S)
    }
    return defines, counters, structs


def probe_program() -> str:
    defines, counters, structs = header_names()
    lines = ["#define SS_ABI_ONLY", '#include "socksplice.h"', "#include <stddef.h>", "#include <stdio.h>"]
    lines.append("int main(void) {")
    for name in (*defines, *counters):
        lines.append(f'\tprintf("const {name} %lld\\n", (long long)({name}));')
    for struct, fields in structs.items():
        lines.append(f'\tprintf("struct {struct} %zu\\n", sizeof(struct {struct}));')
        for f in fields:
            member = f"((struct {struct} *)0)->{f}"
            lines.append(
                f'\tprintf("field {struct} {f} %zu %zu %zu\\n", offsetof(struct {struct}, {f}), '
                f"sizeof({member}), __alignof__({member}));"
            )
    lines += ["\treturn 0;", "}"]
    return "\n".join(lines) + "\n"


@cache
def compiled(workdir: str) -> dict[str, Any]:
    """What the C compiler makes of the header: constants, and per struct its size and fields."""
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "no C compiler: scripts/install.sh installs gcc"
    src, exe = Path(workdir) / "abi.c", Path(workdir) / "abi"
    src.write_text(probe_program())
    build = [cc, "-std=gnu11", "-Wall", "-Werror", "-I", str(SOURCE_DIR), str(src), "-o", str(exe)]
    subprocess.run(build, check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    abi: dict[str, Any] = {"constants": {}, "structs": {}}
    for line in out.splitlines():
        kind, name, *rest = line.split()
        if kind == "const":
            abi["constants"][name] = int(rest[0])
        elif kind == "struct":
            abi["structs"][name] = {"size": int(rest[0]), "fields": {}}
        else:
            offset, size, align = (int(v) for v in rest[1:])
            abi["structs"][name]["fields"][rest[0]] = {"offset": offset, "size": size, "align": align}
    return abi


@pytest.fixture(scope="module")
def abi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compiled(str(tmp_path_factory.mktemp("abi")))


def python_constants() -> dict[str, int]:
    """Every upper-case integer of layout.py (each is the header's SS_<NAME>)."""
    return {
        name: value
        for name, value in vars(layout).items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
    }


def mirrored_structs() -> list[type[ctypes.Structure]]:
    return [
        v
        for v in vars(layout).values()
        if isinstance(v, type) and issubclass(v, ctypes.Structure) and v.__module__ == layout.__name__
    ]


def test_every_python_constant_is_the_headers(abi: dict[str, Any]) -> None:
    constants = python_constants()
    assert {"LAYOUT_VERSION", "MAX_PORTS", "POD_SPLICE_ALL", "POD_DRYRUN_ALL", "NR_COUNTERS"} <= set(
        constants
    )
    for name, value in constants.items():
        assert abi["constants"].get(f"SS_{name}") == value, f"layout.{name} = {value} is not SS_{name}"


def test_counters_are_the_enum_in_order(abi: dict[str, Any]) -> None:
    _, members, _ = header_names()
    counters = [f"SS_C_{name.upper()}" for name in layout.COUNTERS] + ["SS_NR_COUNTERS"]
    evidence = [f"SS_E_{name.upper()}" for name in layout.EVIDENCE] + ["SS_NR_EVIDENCE"]
    assert members == counters + evidence
    for i, name in enumerate(layout.EVIDENCE):
        assert abi["constants"][f"SS_E_{name.upper()}"] == i, name
    assert abi["constants"]["SS_NR_EVIDENCE"] == layout.NR_EVIDENCE
    for i, name in enumerate(layout.COUNTERS):
        assert abi["constants"][f"SS_C_{name.upper()}"] == i, name
    assert abi["constants"]["SS_NR_COUNTERS"] == layout.NR_COUNTERS == len(layout.COUNTERS)


def test_every_mirrored_struct_has_the_headers_layout(abi: dict[str, Any]) -> None:
    structs = mirrored_structs()
    assert structs, "layout.py mirrors no struct"
    for cls in structs:
        c_name = cls.C_STRUCT  # type: ignore[attr-defined]
        c = abi["structs"][c_name]
        py_fields = [f[0] for f in cls._fields_]
        assert py_fields == list(c["fields"]), f"{cls.__name__}: fields differ from struct {c_name}"
        for name in py_fields:
            descr = getattr(cls, name)
            want = c["fields"][name]
            assert (descr.offset, descr.size) == (want["offset"], want["size"]), f"{c_name}.{name}"
        assert ctypes.sizeof(cls) == c["size"], c_name


def test_every_struct_field_of_the_header_was_seen(abi: dict[str, Any]) -> None:
    """The field names come from a small parser: a field it missed would leave a hole."""
    for name, struct in abi["structs"].items():
        end, align = 0, 1
        for field, f in struct["fields"].items():
            pad = -end % f["align"]
            assert f["offset"] == end + pad, f"{name}: a field before {field} was not parsed"
            end, align = f["offset"] + f["size"], max(align, f["align"])
        assert struct["size"] == end + (-end % align), f"{name}: a field at the end was not parsed"


def test_the_abi_is_the_one_recorded_for_this_layout_version(abi: dict[str, Any]) -> None:
    """Changing a pinned map's layout, a flag or a counter without bumping the version fails here."""
    path = RECORDED / f"v{layout.LAYOUT_VERSION}.json"
    text = json.dumps(abi, indent=1, sort_keys=True) + "\n"
    recorded = path.read_text() if path.exists() else None
    assert recorded == text, (
        f"the ABI of bpf/socksplice.h is not the one recorded for layout version "
        f"{layout.LAYOUT_VERSION}: if it changed, bump SS_LAYOUT_VERSION and LAYOUT_VERSION and "
        f"record it as {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}:\n{text}"
    )


def test_the_pin_directory_is_named_by_the_layout_version() -> None:
    from socksplice.bpf.loader import DatapathSettings

    settings = DatapathSettings(pin_root=Path("/sys/fs/bpf"), name="socksplice")
    assert settings.pin_dir == Path(f"/sys/fs/bpf/socksplice/v{layout.LAYOUT_VERSION}")
    assert '#define SS_PIN_DIR SS_PIN_BASE "/v" SS_STR(SS_LAYOUT_VERSION)' in HEADER.read_text()

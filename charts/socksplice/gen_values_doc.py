"""Generate docs/values.md from the chart's values.schema.json (keys, types, descriptions) and
values.yaml (the defaults Helm really uses).

    python charts/socksplice/gen_values_doc.py           # rewrite docs/values.md
    python charts/socksplice/gen_values_doc.py --check   # exit 1 when docs/values.md is stale

tests/unit/test_chart.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent
SCHEMA = CHART / "values.schema.json"
VALUES = CHART / "values.yaml"
MISSING = object()
OUTPUT = CHART.parents[1] / "docs" / "values.md"

HEADER = """\
# socksplice chart values

Generated from [`charts/socksplice/values.schema.json`](../charts/socksplice/values.schema.json) by
`python charts/socksplice/gen_values_doc.py`; do not edit by hand. The schema rejects unknown keys,
so a misspelt value fails `helm install` instead of being ignored. Worked examples live in
[`charts/socksplice/examples/`](../charts/socksplice/examples/) (each is rendered, linted and
validated by the tests).

| key | type | default | description |
|---|---|---|---|
"""


def type_of(node: dict[str, Any]) -> str:
    if "oneOf" in node:
        return " or ".join(type_of(n) for n in node["oneOf"])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and "items" in node and "type" in node["items"]:
        return f"list of {node['items']['type']}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    return str(kind)


def default_of(node: dict[str, Any], value: object) -> str:
    if value is MISSING or (isinstance(value, dict) and "properties" in node):
        return ""  # an object documented key by key below
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def rows(node: dict[str, Any], values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, child in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        value = values.get(name, MISSING)
        description = child.get("description", "").replace("|", "\\|")
        yield f"| `{key}` | {type_of(child)} | {default_of(child, value)} | {description} |"
        if child.get("type") == "object" and "properties" in child:
            yield from rows(child, value if isinstance(value, dict) else {}, f"{key}.")


def render(schema: dict[str, Any], values: dict[str, Any]) -> str:
    return HEADER + "\n".join(rows(schema, values)) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail when docs/values.md is not up to date")
    args = p.parse_args(argv)
    text = render(json.loads(SCHEMA.read_text()), yaml.safe_load(VALUES.read_text()))
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(
                f"{OUTPUT}: stale; run python {Path(__file__).relative_to(CHART.parents[1])}", file=sys.stderr
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

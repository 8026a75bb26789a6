"""A model of what kube-apiserver does with a custom resource on create, for the CRD tests.

There is no API server here. This checks apiVersion/kind/name, prunes nulls, applies defaults,
validates the structural schema (types, enum, bounds, lengths, patterns, required, list types;
unknown fields are errors, as with kubectl's strict field validation) and evaluates the CEL rules
with cel-python when it is installed. Transition rules (those using ``oldSelf``) are not
evaluated on create, as in the API server. ``structural_problems`` lists what would make the API
server refuse the CRD itself.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from socksplice.api.selectors import is_dns1123_subdomain

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"

try:
    import celpy  # noqa: F401  (cel-python; optional)

    HAVE_CEL = True
except ImportError:
    HAVE_CEL = False


def load_crd(name: str) -> dict[str, Any]:
    """``crds/NAME`` as a dict."""
    crd: dict[str, Any] = yaml.safe_load((CRD_DIR / name).read_text())
    return crd


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def _type_ok(value: object, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown type {kind}")


def prune_nulls_and_default(value: Any, schema: dict[str, Any]) -> Any:
    """Nulls of non-nullable fields are dropped, then defaults applied (apiserver order)."""
    if isinstance(value, dict) and "properties" in schema:
        out = {
            k: v
            for k, v in value.items()
            if not (v is None and not schema["properties"].get(k, {}).get("nullable"))
        }
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = prune_nulls_and_default(out[name], sub)
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: prune_nulls_and_default(v, schema["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_nulls_and_default(v, schema["items"]) for v in value]
    return value


def _cel(rule: str, value: Any) -> bool:
    import celpy
    from celpy.adapter import json_to_cel
    from celpy.celtypes import BoolType

    env = celpy.Environment()
    result = env.program(env.compile(rule)).evaluate({"self": json_to_cel(value)})
    return isinstance(result, BoolType) and bool(result)


def schema_errors(value: Any, schema: dict[str, Any], path: str, cel: bool = HAVE_CEL) -> list[str]:
    """Errors for ``value`` against ``schema`` (after pruning and defaulting), like the API server."""
    kind = schema.get("type")
    if kind is not None and not _type_ok(value, kind):
        return [f"{path}: must be of type {kind}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: Unsupported value: {value!r}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: should be greater than or equal to {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: should be less than or equal to {schema['maximum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: may not be longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: should be at least {schema['minLength']} chars long")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{path}: should match '{schema['pattern']}'")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: should have at least {schema['minItems']} items")
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    errors.append(f"{path}[{i}]: Duplicate value: {item!r}")
                seen.append(item)
        if list_type == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
            errors += [f"{path}[{i}]: Duplicate value" for i, k in enumerate(keys) if k in keys[:i]]
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{path}[{i}]", cel)
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(f"{path}: must have at most {schema['maxProperties']} items")
        errors += [
            f"{path}.{name}: Required value" for name in schema.get("required", []) if name not in value
        ]
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if props is not None and name in props:
                errors += schema_errors(item, props[name], f"{path}.{name}", cel)
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, f"{path}[{name}]", cel)
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f'{path}: unknown field "{name}"')
    if cel and not errors:
        for rule in schema.get("x-kubernetes-validations", []):
            if "oldSelf" in rule["rule"]:
                continue  # a transition rule: only checked on update
            if not _cel(rule["rule"], value):
                errors.append(f"{path}{rule.get('fieldPath', '')}: Invalid value: {rule['message']}")
    return errors


def api_errors_for(crd: dict[str, Any], obj: dict[str, Any], cel: bool = HAVE_CEL) -> list[str]:
    """What the API server would say when ``obj`` is created against ``crd`` (empty = accepted)."""
    served = {f"{crd['spec']['group']}/{v['name']}" for v in crd["spec"]["versions"] if v["served"]}
    if obj.get("apiVersion") not in served or obj.get("kind") != crd["spec"]["names"]["kind"]:
        return [f"no matches for kind {obj.get('kind')!r} in version {obj.get('apiVersion')!r}"]
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not is_dns1123_subdomain(name):
        return [f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of ..."]
    schema = schema_of(crd)
    body = prune_nulls_and_default(obj, schema)
    body.pop("status", None)  # the status subresource: ignored on create
    return schema_errors(body, schema, "", cel)


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """Why the API server would refuse this schema (not structural, bad list maps, CEL without message)."""
    out: list[str] = []
    for path, node in walk(schema):
        where = path or "<root>"
        escaped = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        if "type" not in node and not escaped:
            out.append(f"{where}: no type")
        if node.get("additionalProperties") is False:
            out.append(f"{where}: additionalProperties: false is not structural")
        if "properties" in node and "additionalProperties" in node:
            out.append(f"{where}: both kinds of properties")
        out += [
            f"{where}: {k} is not allowed" for k in ("$ref", "oneOf", "anyOf", "allOf", "not") if k in node
        ]
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            out.append(f"{where}: array without items")
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            if not set(keys) <= set(node["items"].get("required", [])):
                out.append(f"{where}: map keys must be required")
        for rule in node.get("x-kubernetes-validations", []):
            if not rule.get("message"):
                out.append(f"{where}: CEL rule without a message")
            field_path = rule.get("fieldPath")
            if field_path and field_path.lstrip(".") not in node.get("properties", {}):
                out.append(f"{where}: fieldPath {field_path} not in schema")
        out += [
            f"{where}: required {n} is not a property"
            for n in node.get("required", [])
            if n not in node.get("properties", {})
        ]
        if "default" in node and schema_errors(node["default"], node, where):
            out.append(f"{where}: invalid default")
    if schema.get("properties", {}).get("metadata") != {"type": "object"}:
        out.append(".metadata: must be exactly {type: object}")
    return out

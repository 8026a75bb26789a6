"""Read ``SocketSplice`` manifests from YAML/JSON text and from a directory (local mode).

Local mode takes the same files a user would ``kubectl apply``. A broken file must not stop the
others from applying, so ``load_manifest_dir`` loads each file all-or-nothing and returns the
errors next to the objects. YAML is read as Kubernetes reads it: several documents per file,
``kind: List`` wrappers, and duplicate mapping keys are an error (PyYAML would keep the last).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from socksplice.api.selectors import describe
from socksplice.api.socketsplice import API_VERSION, KIND, SocketSplice, parse_socketsplice
from socksplice.errors import InvalidSpec, PermanentError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys in a mapping."""


def _construct_mapping(
    loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Hashable, Any]:
    seen: set[Hashable] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(exc: yaml.YAMLError, source: str) -> InvalidSpec:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}: {problem}" if context else str(problem)
    if mark is not None:
        return InvalidSpec("(yaml)", f"line {mark.line + 1}, column {mark.column + 1}: {detail}", source)
    return InvalidSpec("(yaml)", detail, source)


def _where(source: str, part: str) -> str:
    return f"{source} {part}" if source else part


def _objects(doc: object, source: str) -> list[tuple[Mapping[str, Any], str]]:
    """Unwrap ``kind: List``; return (object, source) pairs."""
    if not isinstance(doc, Mapping):
        raise InvalidSpec(
            "(document)", f"must be a mapping (a Kubernetes object), got {describe(doc)}", source
        )
    if doc.get("kind") == "List" and doc.get("apiVersion") in ("v1", None):
        items = doc.get("items")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise InvalidSpec("items", f"must be a list, got {describe(items)}", source)
        out: list[tuple[Mapping[str, Any], str]] = []
        for i, item in enumerate(items):
            item_source = _where(source, f"items[{i}]")
            if not isinstance(item, Mapping):
                raise InvalidSpec("(object)", f"must be a mapping, got {describe(item)}", item_source)
            out.append((item, item_source))
        return out
    return [(doc, source)]


def _parse_documents(docs: list[object], source: str, skip_other_kinds: bool) -> list[SocketSplice]:
    present = [(i, d) for i, d in enumerate(docs, start=1) if d is not None]
    splices: list[SocketSplice] = []
    first_seen: dict[str, str] = {}
    for index, doc in present:
        doc_source = _where(source, f"document {index}") if len(present) > 1 else source
        for obj, obj_source in _objects(doc, doc_source):
            if skip_other_kinds and (obj.get("apiVersion"), obj.get("kind")) != (API_VERSION, KIND):
                continue
            splice = parse_socketsplice(obj, obj_source)
            if splice.key in first_seen:
                earlier = first_seen[splice.key] or "an earlier document"
                raise InvalidSpec(
                    "metadata.name",
                    f"duplicate SocketSplice {splice.key} (first defined in {earlier})",
                    obj_source,
                )
            first_seen[splice.key] = obj_source
            splices.append(splice)
    return splices


def load_manifests(text: str, source: str = "", *, skip_other_kinds: bool = False) -> list[SocketSplice]:
    """Parse multi-document YAML (JSON is YAML too) into SocketSplices, in document order.

    Empty documents are skipped. Any problem raises InvalidSpec whose ``source`` names the
    document (``"f.yaml document 2"``, when there are several) and whose ``field`` is the path,
    or ``(yaml)`` for a syntax error with its line and column. Objects of another kind are an
    error unless ``skip_other_kinds``. The same namespace/name twice is an error.
    """
    try:
        docs: list[object] = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    return _parse_documents(docs, source, skip_other_kinds)


def _load_file(path: Path, skip_other_kinds: bool) -> list[SocketSplice]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpec("(file)", f"not UTF-8 text: {exc.reason} at byte {exc.start}", source) from exc
    except OSError as exc:
        raise InvalidSpec("(file)", f"cannot read: {exc.strerror}", source) from exc
    if path.suffix == ".json":
        try:
            doc: object = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise InvalidSpec("(json)", f"line {exc.lineno}, column {exc.colno}: {exc.msg}", source) from exc
        return _parse_documents([doc], source, skip_other_kinds)
    return load_manifests(text, source, skip_other_kinds=skip_other_kinds)


def load_manifest_dir(
    path: str | os.PathLike[str], *, skip_other_kinds: bool = False
) -> tuple[list[SocketSplice], list[InvalidSpec]]:
    """Load every ``*.yaml``, ``*.yml`` and ``*.json`` file directly in ``path``, sorted by name.

    Each file loads all-or-nothing: a file with any error contributes no objects and one
    InvalidSpec. A SocketSplice whose namespace/name an earlier file already defined makes the
    later file fail. Hidden files (``.name``, e.g. the ``..data`` entries of a mounted ConfigMap)
    and subdirectories are ignored. A missing directory raises PermanentError.
    """
    root = Path(path)
    if not root.is_dir():
        raise PermanentError(f"{root}: manifest directory does not exist or is not a directory")
    splices: list[SocketSplice] = []
    errors: list[InvalidSpec] = []
    owner: dict[str, str] = {}
    for file in sorted(root.iterdir(), key=lambda p: p.name):
        if file.name.startswith(".") or file.suffix not in MANIFEST_SUFFIXES or not file.is_file():
            continue
        try:
            loaded = _load_file(file, skip_other_kinds)
            for splice in loaded:
                if splice.key in owner:
                    raise InvalidSpec(
                        "metadata.name",
                        f"duplicate SocketSplice {splice.key} (already defined in {owner[splice.key]})",
                        str(file),
                    )
        except InvalidSpec as exc:
            errors.append(exc)
            continue
        for splice in loaded:
            owner[splice.key] = str(file)
        splices.extend(loaded)
    return splices, errors

"""Local mode's NetworkPolicies: ``local apply`` writes them to ``<dir>/networkpolicies/``, the
local agent reads them from there (``nodeagent.policywatch``), ``local delete networkpolicy``
removes them. They are validated as far as the agent reads them (``api.netpolicy``); enforcing
them is the CNI's business, which local mode stands in for with packet filters in tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from socksplice.api.netpolicy import API_VERSION, KIND, NetworkPolicy, parse_network_policy
from socksplice.errors import InvalidSpec, PermanentError

NETWORK_POLICIES_DIR = "networkpolicies"
SUFFIXES = (".yaml", ".yml", ".json")


def is_network_policy(doc: object) -> bool:
    return isinstance(doc, Mapping) and (doc.get("apiVersion"), doc.get("kind")) == (API_VERSION, KIND)


def path_of(directory: Path, namespace: str, name: str) -> Path:
    return directory / NETWORK_POLICIES_DIR / f"{namespace}_{name}.yaml"


def write(directory: Path, docs: list[Mapping[str, Any]], source: str) -> list[NetworkPolicy]:
    """Validate every document first, then write each to its own file; returns them."""
    policies = [parse_network_policy(d, source) for d in docs]
    for doc, policy in zip(docs, policies, strict=True):
        target = path_of(directory, policy.namespace, policy.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(dict(doc), sort_keys=False))
    return policies


def delete(directory: Path, namespace: str, name: str) -> None:
    target = path_of(directory, namespace, name)
    if not target.exists():
        raise PermanentError(f"networkpolicy {namespace}/{name}: not found in {target.parent}")
    target.unlink()


def load_dir(directory: Path) -> tuple[list[NetworkPolicy], list[InvalidSpec]]:
    """Every manifest file in ``directory`` (missing: none), each file all-or-nothing."""
    policies: list[NetworkPolicy] = []
    errors: list[InvalidSpec] = []
    files = sorted(directory.iterdir()) if directory.is_dir() else []
    for file in files:
        if file.name.startswith(".") or file.suffix not in SUFFIXES or not file.is_file():
            continue
        try:
            docs = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
            loaded = [parse_network_policy(d, str(file)) for d in docs]
        except InvalidSpec as exc:
            errors.append(exc)
            continue
        except (yaml.YAMLError, AttributeError) as exc:
            errors.append(InvalidSpec("(yaml)", str(exc), str(file)))
            continue
        policies.extend(loaded)
    return policies, errors

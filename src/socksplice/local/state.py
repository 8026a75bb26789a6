"""Where a realized local topology is written down, so other processes and crashes can find it.

Two places hold the same JSON record:

- ``<state dir>/topology.json`` (default ``/run/socksplice/local/<cluster name>/``), read by the
  node agent started with ``--local DIR``; ``<state dir>/manifests/`` is where local tools drop
  SocketSplice YAML files.
- the run registry ``/run/socksplice/local/.runs/<run id>.json``, written *before* the first
  kernel object is created and removed *after* the last one is gone, so ``cleanup_stale`` can
  find every run whose owner died, even one that crashed half-way through ``up()``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from socksplice.errors import PermanentError

if TYPE_CHECKING:
    from socksplice.local.topology import LocalTopology

RUN_DIR = Path("/run/socksplice/local")
REGISTRY_DIR = RUN_DIR / ".runs"
STATE_FILE = "topology.json"
MANIFESTS_DIR = "manifests"
VERSION = 1


@dataclass(frozen=True)
class PodRecord:
    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ipv4: str
    ipv6: str
    netns: str
    netns_path: str
    cgroup: str


@dataclass(frozen=True)
class TopologyRecord:
    """Everything needed to find, use and tear down a run without recreating it."""

    run_id: str
    cluster: dict[str, Any] = field(hash=False)  # LocalPods document, every address explicit
    created_at: str
    owner_pid: int | None  # None: detached, lives until an explicit down()
    owner_start: int | None  # /proc/<pid>/stat starttime, guards against pid reuse
    node_netns: str
    bridge: str
    cgroup_parent: str
    pods: tuple[PodRecord, ...]
    state_dir: str | None = None
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> TopologyRecord:
        try:
            raw = json.loads(text)
            if raw.get("version") != VERSION:
                raise PermanentError(f"{source}: unsupported state version {raw.get('version')!r}")
            raw["pods"] = tuple(PodRecord(**p) for p in raw["pods"])
            return cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise PermanentError(f"{source}: not a socksplice local topology record: {exc}") from exc


def default_dir(cluster_name: str) -> Path:
    return RUN_DIR / cluster_name


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def owner_alive(record: TopologyRecord) -> bool:
    """True for detached runs and for runs whose owner process still exists."""
    if record.owner_pid is None:
        return True
    return process_start(record.owner_pid) == record.owner_start


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_record(path: Path) -> TopologyRecord:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PermanentError(f"{path}: cannot read topology state: {exc.strerror}") from exc
    return TopologyRecord.from_json(text, str(path))


def register(record: TopologyRecord, registry_dir: Path = REGISTRY_DIR) -> None:
    _write(registry_dir / f"{record.run_id}.json", record.to_json())


def claim(run_id: str, registry_dir: Path = REGISTRY_DIR) -> bool:
    """Atomically reserve ``run_id`` in the registry; False when another run has it."""
    registry_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(registry_dir / f"{run_id}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def unregister(run_id: str, registry_dir: Path = REGISTRY_DIR) -> None:
    (registry_dir / f"{run_id}.json").unlink(missing_ok=True)


def registered(registry_dir: Path = REGISTRY_DIR) -> list[TopologyRecord]:
    """Every readable record in the registry (unreadable ones are skipped, never deleted)."""
    out = []
    for path in sorted(registry_dir.glob("*.json")):
        try:
            out.append(read_record(path))
        except PermanentError:
            continue
    return out


def save(topology: LocalTopology, directory: Path) -> Path:
    """Write ``topology.json`` (and create ``manifests/``) in ``directory``; returns the file.

    Refuses to overwrite the state of another run that is still up.
    """
    path = directory / STATE_FILE
    if path.exists():
        try:
            old = read_record(path)
        except PermanentError:
            old = None
        if old and old.run_id != topology.run_id and Path("/run/netns", old.node_netns).exists():
            raise PermanentError(
                f"{path}: local cluster {topology.cluster.name!r} is already up as run {old.run_id}; "
                "take it down first"
            )
    (directory / MANIFESTS_DIR).mkdir(parents=True, exist_ok=True)
    record = topology.record(state_dir=directory)
    _write(path, record.to_json())
    return path


def forget(directory: Path, run_id: str) -> None:
    """Remove ``topology.json`` if it describes ``run_id`` (manifests stay: they are the user's)."""
    path = directory / STATE_FILE
    try:
        if read_record(path).run_id != run_id:
            return
    except PermanentError:
        return
    path.unlink(missing_ok=True)


def load(directory: Path) -> LocalTopology:
    """Reconnect to the topology described in ``directory`` without recreating anything."""
    from socksplice.local.topology import LocalTopology

    return LocalTopology.from_record(read_record(directory / STATE_FILE))


def cleanup_stale(registry_dir: Path = REGISTRY_DIR) -> list[str]:
    """Tear down every registered run whose owner process is gone; returns their run ids.

    Only objects named after such a run are touched (``ss-<id>-*`` netns with the bridge
    ``ssbr-<id>`` and chains ``SS-<id>*`` inside, ``socksplice-local/<id>`` cgroups); detached
    runs and runs of live processes are left alone.
    """
    from socksplice.local.topology import LocalTopology

    removed = []
    for record in registered(registry_dir):
        if owner_alive(record):
            continue
        LocalTopology.from_record(record, registry_dir=registry_dir).down()
        removed.append(record.run_id)
    return removed

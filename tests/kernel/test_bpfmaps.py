"""Maps read and written with bpf(2) alone (kernel/bpfmaps.py), and the agent that never holds the
compiler: real maps in this kernel, a real compile in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from socksplice.kernel import bpfsys
from socksplice.kernel.bpfmaps import BpfMap

pytestmark = pytest.mark.kernel

HASH, ARRAY, PERCPU_ARRAY, PERCPU_HASH = 1, 2, 6, 5


@pytest.fixture
def new_map() -> Iterator[object]:
    made: list[BpfMap] = []

    def make(map_type: int, key_size: int, value_size: int, max_entries: int) -> BpfMap:
        m = BpfMap(bpfsys.map_create(map_type, key_size, value_size, max_entries), f"test-{map_type}")
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_a_hash_map_round_trips_and_reads_in_several_batches(new_map) -> None:  # type: ignore[no-untyped-def]
    m = new_map(HASH, 8, 4, 5000)
    assert (m.key_size, m.value_size, m.max_entries, m.percpu) == (8, 4, 5000, False)
    want = {u64(k): u32(k * 3) for k in range(3000)}  # more than one batch of bpfsys.BATCH
    for k, v in want.items():
        m.update(k, v)
    assert m.lookup(u64(7)) == u32(21) and m.lookup(u64(99999)) is None
    assert dict(m.items()) == want
    assert m.delete(u64(7)) and not m.delete(u64(7))
    assert len(m.keys()) == 2999


def test_per_cpu_values_are_one_per_possible_cpu(new_map) -> None:  # type: ignore[no-untyped-def]
    m = new_map(PERCPU_HASH, 4, 12, 16)  # a 12-byte value: each CPU's copy is padded to 16
    cpus = bpfsys.possible_cpus()
    m.update_percpu(u32(1), [bytes([i + 1]) * 12 for i in range(cpus)])
    assert m.lookup_percpu(u32(1)) == [bytes([i + 1]) * 12 for i in range(cpus)]
    assert [(k, v) for k, v in m.items_percpu()] == [(u32(1), [bytes([i + 1]) * 12 for i in range(cpus)])]


def test_counter_sums_and_flag_arrays(new_map) -> None:  # type: ignore[no-untyped-def]
    counters = new_map(PERCPU_ARRAY, 4, 8, 6400)
    cpus = bpfsys.possible_cpus()
    counters.update_percpu(u32(6399), [u64(10 + i) for i in range(cpus)])
    counters.update_percpu(u32(3), [u64(1)] * cpus)
    sums = counters.array_percpu_sums()
    assert len(sums) == 6400 and sums[6399] == sum(10 + i for i in range(cpus)) and sums[3] == cpus
    assert sum(sums) == sums[6399] + sums[3]
    flags = new_map(ARRAY, 4, 4, 4096)
    flags.update(u32(4095), u32(1))
    values = flags.array_u32_values()
    assert values[4095] == 1 and sum(values) == 1


def test_without_batches_the_map_is_walked_key_by_key(new_map, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    m = new_map(PERCPU_ARRAY, 4, 8, 64)
    m.update_percpu(u32(5), [u64(2)] * bpfsys.possible_cpus())
    batched = m.array_percpu_sums()
    monkeypatch.setattr(bpfsys, "map_lookup_batch_raw", lambda *a: None)
    assert m.array_percpu_sums() == batched and batched[5] == 2 * bpfsys.possible_cpus()


def test_a_wrong_sized_key_is_refused_with_the_map_named(new_map) -> None:  # type: ignore[no-untyped-def]
    m = new_map(HASH, 8, 4, 4)
    with pytest.raises(Exception, match="key of 4 bytes, the map's are 8"):
        m.lookup(u32(1))


LEAN = """
import json, sys
from socksplice.bpf.loader import Datapath, DatapathSettings
dp = Datapath.load(DatapathSettings(pin_root=__import__('pathlib').Path(sys.argv[1]), name=sys.argv[2]))
rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]
print(json.dumps({"bcc": "bcc" in sys.modules, "rss_kb": int(rss), "programs": sorted(dp.program_fds()),
                  "observation": dp.observation}))
dp.close()
dp.unpin()
"""


def test_the_loading_process_never_imports_the_compiler(tmp_path: Path) -> None:
    """bcc compiles in a child; the process that holds the data path has no bcc and no LLVM."""
    from tests.kernel.splicing import private_bpffs

    with private_bpffs(tmp_path / "bpffs") as root:
        done = subprocess.run(
            [sys.executable, "-c", LEAN, str(root), "lean"], capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["bcc"] is False
    assert out["rss_kb"] < 64 * 1024, out
    assert {"ss_sockops", "ss_sk_msg"} <= set(out["programs"])
    if not out["observation"]:  # the observation programs came back too, attached by their fds
        assert any(name.startswith(("tracepoint__", "raw_tracepoint__")) for name in out["programs"])


def test_a_failed_compile_or_load_is_one_clear_error_and_leaves_no_pins(tmp_path: Path) -> None:
    from socksplice.bpf.loader import Datapath, DatapathSettings
    from socksplice.errors import KernelError
    from tests.kernel.splicing import private_bpffs

    with private_bpffs(tmp_path / "bpffs") as root:
        settings = DatapathSettings(pin_root=root, name="broken", pods_size=0)  # a map of 0 entries
        with pytest.raises(KernelError, match="datapath: load failed"):
            Datapath.load(settings)
        assert not settings.pin_base.exists()


def test_footprint_reports_the_agent_lean(tmp_path: Path) -> None:
    """`socksplice footprint`: the agent as a user starts it attaches, and holds no compiler."""
    done = subprocess.run(
        [sys.executable, "-m", "socksplice.cli", "footprint", "--seconds", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    fp = json.loads(done.stdout)
    assert 0 < fp["start_to_attach_s"] < 60
    assert 0 < fp["rss_mb"] < 64, fp
    assert fp["idle_seconds"] >= 3

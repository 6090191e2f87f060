"""The oracle's additions for the fuzzer: the pin reference, batch-speed integrity, bounded detail."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fuzz.oracle.judge import Oracle
from ring.frames import FrameBatch
from ring.memory import PAGE_SIZE, PhysicalMemory


@dataclass
class FakeBatch:
    device: str
    purpose: str
    direction: str
    lengths: npt.NDArray[np.int64]
    phys: npt.NDArray[np.uint64]
    allowed: npt.NDArray[np.bool_]


def setup() -> tuple[PhysicalMemory, Oracle, int]:
    memory = PhysicalMemory(1 << 20, 1 << 16, seed=3)
    mine = memory.alloc(4 * PAGE_SIZE, 7)
    oracle = Oracle(memory, {"nicX": 7})
    oracle.grant(7, mine.phys, PAGE_SIZE, 1)  # first page: device read only
    return memory, oracle, mine.phys


def batch(purpose: str, direction: str, phys: list[int], lengths: list[int]) -> FakeBatch:
    return FakeBatch(
        "nicX",
        purpose,
        direction,
        np.array(lengths, dtype=np.int64),
        np.array(phys, dtype=np.uint64),
        np.ones(len(phys), dtype=bool),
    )


def test_pin_reference_judges_own_frames() -> None:
    _, oracle, base = setup()
    oracle.on_dma(batch("tx-data", "read", [base, base + PAGE_SIZE - 32], [64, 64]))
    assert [e.kind for e in oracle.escapes] == ["pin"]  # the second one runs into the unpinned page
    oracle.escapes.clear()
    oracle.on_dma(batch("rx-data", "write", [base], [64]))  # a write into a read-only pin
    assert [e.kind for e in oracle.escapes] == ["pin"]
    oracle.escapes.clear()
    oracle.on_dma(batch("tx-data", "read", [0], [64]))  # kernel memory
    assert [e.kind for e in oracle.escapes] == ["dma"]
    oracle.escapes.clear()
    oracle.on_dma(batch("tx-data", "read", [base + 3 * PAGE_SIZE - 8], [3 * PAGE_SIZE]))  # long: middle frames too
    assert len(oracle.escapes) == 1


def test_detail_limit_counts_the_rest() -> None:
    _, oracle, _ = setup()
    oracle.detail_limit = 2
    oracle.on_dma(batch("tx-data", "read", [0] * 10, [64] * 10))
    assert len(oracle.escapes) == 2 and oracle.suppressed == 8


def test_check_written_sees_dma_writes_into_guarded_frames() -> None:
    memory, oracle, _ = setup()
    oracle.guard("kernel", 0, 1 << 16)
    memory.data[100] ^= 0xFF  # not written by DMA: only the full-hash backstop would see it
    oracle.check_written()
    assert oracle.escapes == []
    oracle.on_dma(batch("rx-data", "write", [PAGE_SIZE], [8]))
    memory.data[PAGE_SIZE] ^= 0xFF
    oracle.escapes.clear()
    oracle.check_written()
    assert [e.kind for e in oracle.escapes] == ["integrity"]


def test_wire_leak_needs_the_whole_marker_in_one_frame() -> None:
    memory, oracle, _ = setup()
    oracle.secrets[b"SECRET-MARK"] = "alice"
    split = FrameBatch.from_frames([b"x" * 20 + b"SECRET", b"-MARK" + b"y" * 20])
    oracle.on_wire("nicX", split, np.zeros(2, dtype=np.int64))
    assert oracle.escapes == []
    canary = memory.data[0:32].tobytes()
    oracle.on_wire("nicX", FrameBatch.from_frames([b"z" * 14 + canary, b"SECRET-MARK"]), np.zeros(2, dtype=np.int64))
    assert sorted(e.what for e in oracle.escapes) == ["alice's secret sent by nicX", "kernel canary sent by nicX"]


def test_oracle_imports_nothing_it_judges() -> None:
    """fuzz/oracle/ may import ring/ (and each other) only: never verifier/ (the judged checks) nor driver/."""
    import ast
    from pathlib import Path

    sources = sorted((Path(__file__).resolve().parents[2] / "fuzz" / "oracle").glob("*.py"))
    assert {s.name for s in sources} >= {"judge.py", "audit.py", "liveness.py", "reasons.py", "escape.py"}
    for source in sources:
        modules: set[str] = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
        project = {m for m in modules if m.split(".")[0] in ("ring", "verifier", "driver", "fuzz", "sandbox")}
        assert all(m.startswith(("ring", "fuzz.oracle")) for m in project), (source.name, project)

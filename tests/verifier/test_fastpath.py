"""The compiled fast path agrees with the numpy checks, batch by batch, and the numpy path still stands alone.

Also: the C structs are the numpy dtypes (checked when the module loads, and
a different dtype is refused), and the module is the one compiled from the
sources beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ring.cbuild import FASTPATH
from ring.descriptors import DESC_SIZE, RX_DESC, TX_DESC, TXD_CMD_DEXT, TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_RS
from ring.memory import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from sandbox.demos import attack as attack_demo
from sandbox.demos import pingpong
from tests.verifier.compiled import compiled_fast_path, forget_accelerators
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection
from verifier.pins import Access, Pin, PinTable
from verifier.rules import fastpath
from verifier.rules.checks import check_rx, check_tx
from verifier.rules.policy import Policy
from world import scenario
from world.build import World

SIZE = 64
MEMORY = PhysicalMemory(8 << 20, 1 << 20, seed=3)
POOL = MEMORY.alloc(16 * PAGE_SIZE, owner=0)
POLICY = Policy()


def lib() -> fastpath.FastPath:
    fast = compiled_fast_path(required=True)
    assert fast is not None
    return fast


def pins_for(pages: list[int], access: Access) -> PinTable:
    table = PinTable(0, MEMORY.frames)
    for i, page in enumerate(sorted(set(pages))):
        table.add(Pin(i + 1, 0, 0, PAGE_SIZE, access, np.array([POOL.first + page])))
    return table


addresses = st.one_of(
    st.integers(0, 16 * PAGE_SIZE - 1).map(lambda off: POOL.phys + off),  # inside the pool
    st.sampled_from([0, PAGE_SIZE * 3, MEMORY.size - 8, MEMORY.size, 2**64 - 16, 2**63]),  # kernel, edges, wrap
)
tx_descs = st.lists(
    st.tuples(
        addresses,
        st.sampled_from([0, 1, 60, 2048, 4095, 4096, 4097, 65535]),
        st.sampled_from([TXD_CMD_EOP | TXD_CMD_RS, TXD_CMD_RS, TXD_CMD_EOP | TXD_CMD_IC, TXD_CMD_EOP | TXD_CMD_DEXT]),
    ),
    min_size=1,
    max_size=SIZE - 1,
)


def run_tx(fast: fastpath.FastPath, descs: np.ndarray, pins: PinTable, tail: int) -> tuple[int, np.ndarray, np.ndarray]:
    user = np.zeros(SIZE * DESC_SIZE, dtype=np.uint8)
    ring = user.view(TX_DESC)
    k = descs.size
    idx = (np.arange(k) + tail) % SIZE
    ring[idx] = descs
    shadow = np.zeros(SIZE * DESC_SIZE, dtype=np.uint8)
    snap = np.zeros(SIZE * DESC_SIZE, dtype=np.uint8)
    to_user = np.full(SIZE, -1, dtype=np.int64)
    mask, expect, limit = POLICY.tx_fast_path or (0, 0, 0)
    ok = fast.lib.tx_snapshot_check_post(
        fast.ptr(user), SIZE, tail, k, fast.ptr(snap), fast.ptr(pins.frame_ok[int(Access.READ)]), pins.frames,
        int(mask), int(expect), int(limit), fast.ptr(shadow), 5, fast.i64(to_user),
    )  # fmt: skip
    assert bytes(snap[: k * DESC_SIZE]) == descs.tobytes()  # the snapshot is the user's descriptors, in order
    return ok, shadow.view(TX_DESC), to_user


@settings(max_examples=300, deadline=None)
@given(raw=tx_descs, pages=st.lists(st.integers(0, 15), max_size=16), tail=st.integers(0, SIZE - 1))
def test_tx_fast_path_accepts_exactly_what_numpy_accepts(raw: list[tuple[int, int, int]], pages: list[int],
                                                         tail: int) -> None:  # fmt: skip
    fast = lib()
    descs = np.zeros(len(raw), dtype=TX_DESC)
    for i, (addr, length, cmd) in enumerate(raw):
        descs[i]["addr"], descs[i]["length"], descs[i]["cmd"] = addr, length, cmd
    pins = pins_for(pages, Access.READ)
    ok, shadow, to_user = run_tx(fast, descs, pins, tail)
    verdicts = check_tx(descs, pins, MEMORY.owner, MEMORY.size, POLICY)
    assert bool(ok) == (verdicts is None)
    if ok:
        k = descs.size
        posted = (np.arange(k) + 5) % SIZE
        assert shadow[posted].tobytes() == descs.tobytes()
        assert list(to_user[posted]) == list((np.arange(k) + tail) % SIZE)


@settings(max_examples=300, deadline=None)
@given(addrs=st.lists(addresses, min_size=1, max_size=SIZE - 1), pages=st.lists(st.integers(0, 15), max_size=16))
def test_rx_fast_path_accepts_exactly_what_numpy_accepts(addrs: list[int], pages: list[int]) -> None:
    fast = lib()
    pins = pins_for(pages, Access.WRITE)
    descs = np.zeros(len(addrs), dtype=RX_DESC)
    descs["addr"] = np.array(addrs, dtype=np.uint64)
    descs["length"] = 77  # garbage the tenant left: the shadow copy must not carry it
    user = np.zeros(SIZE * DESC_SIZE, dtype=np.uint8)
    user.view(RX_DESC)[: descs.size] = descs
    shadow = np.zeros(SIZE * DESC_SIZE, dtype=np.uint8)
    snap = np.zeros(SIZE * DESC_SIZE, dtype=np.uint8)
    to_user = np.full(SIZE, -1, dtype=np.int64)
    ok = fast.lib.rx_snapshot_check_post(
        fast.ptr(user), SIZE, 0, descs.size, fast.ptr(snap), fast.ptr(pins.frame_ok[int(Access.WRITE)]), pins.frames,
        POLICY.rx_buffer_size, fast.ptr(shadow), 0, fast.i64(to_user),
    )  # fmt: skip
    verdicts = check_rx(descs["addr"], pins, MEMORY.owner, MEMORY.size, POLICY)
    assert bool(ok) == (verdicts is None)
    if ok:
        posted = shadow.view(RX_DESC)[: descs.size]
        assert list(posted["addr"]) == addrs
        assert not posted["length"].any() and not posted["status"].any()


@pytest.fixture
def numpy_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(fastpath.SWITCH, "0")
    forget_accelerators()
    yield
    forget_accelerators()


def test_numpy_path_alone_carries_traffic_and_blocks_attacks(numpy_only: None) -> None:
    assert fastpath.enabled() is None
    assert fastpath.status() == "fast path: off (NIC_SANDBOX_FASTPATH=0); using the numpy checks"
    scen = dataclasses.replace(scenario.load(), protection=Protection.VERIFIER)
    with World.build(scen, pcap=False) as world:
        assert pingpong.run(world, 2000, 64, 64).clean
    attack = dataclasses.replace(scenario.load(embedded="attack"), protection=Protection.VERIFIER)
    report = attack_demo.run(attack, MemoryAudit(), honest_frames=200)
    assert not any(r.succeeded for r in report.results)


def test_fast_path_is_used_when_it_builds() -> None:
    lib()
    scen = dataclasses.replace(scenario.load(), protection=Protection.VERIFIER)
    with World.build(scen, pcap=False) as world:
        assert pingpong.run(world, 500, 64, 32).clean
        handlers = [q.handler for q in world.kernel.queues.values()]
        assert handlers and all(getattr(h, "fast", None) is not None for h in handlers)


def test_the_compiled_structs_are_the_numpy_dtypes() -> None:
    fast = lib()
    fastpath.check_layout(fast.ffi, fast.lib, fastpath.STRUCTS, PAGE_SHIFT)  # what state() did at load
    for ctype, dtype in (("struct tx_desc", TX_DESC), ("struct rx_desc", RX_DESC)):
        c_fields = dict(fast.ffi.typeof(ctype).fields)
        for name, info in (dtype.fields or {}).items():
            assert fast.ffi.offsetof(ctype, name) == info[1]
            assert fast.ffi.sizeof(c_fields[name].type) == info[0].itemsize
    assert fast.ffi.sizeof("struct tx_desc") == fast.ffi.sizeof("struct rx_desc") == DESC_SIZE
    assert fastpath.status().startswith("fast path: compiled (_fastpath")


def test_a_dtype_that_differs_from_the_structs_is_refused() -> None:
    fast = lib()
    swapped = np.dtype([("addr", "<u8"), ("length", "<u2"), ("cmd", "u1"), ("cso", "u1"), ("status", "u1"),
                        ("css", "u1"), ("special", "<u2")])  # fmt: skip
    with pytest.raises(fastpath.LayoutMismatch, match=r"struct tx_desc is \(name, offset, size\)"):
        fastpath.check_layout(fast.ffi, fast.lib, {"struct tx_desc": swapped}, PAGE_SHIFT)
    with pytest.raises(fastpath.LayoutMismatch, match=r"sizeof\(struct rx_desc\) is 16, numpy itemsize 32"):
        fastpath.check_layout(fast.ffi, fast.lib, {"struct rx_desc": np.dtype((np.void, 32))}, PAGE_SHIFT)
    with pytest.raises(fastpath.LayoutMismatch, match=r"FASTPATH_PAGE_SHIFT is 12, ring/ declares 13"):
        fastpath.check_layout(fast.ffi, fast.lib, fastpath.STRUCTS, 13)


def test_the_kernel_refuses_a_module_whose_layout_differs(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    lib()
    wider = np.dtype({"names": ["addr", "length"], "formats": ["<u8", "<u4"], "itemsize": 16})
    monkeypatch.setattr(fastpath, "STRUCTS", {**fastpath.STRUCTS, "struct rx_desc": wider})
    fastpath.state.cache_clear()
    try:
        assert fastpath.enabled() is None
        line = fastpath.status()
        assert line.startswith("fast path: refused, its layout differs from ring/: struct rx_desc is")
        assert line.endswith("; using the numpy checks") and "\n" not in line
        assert [r.getMessage() for r in caplog.records if r.name == fastpath.__name__] == [line]  # said once
        fastpath.enabled()
        assert len([r for r in caplog.records if r.name == fastpath.__name__]) == 1
    finally:
        fastpath.state.cache_clear()


def test_the_module_was_compiled_from_these_sources() -> None:
    fast = lib()
    assert fast.ffi.string(fast.lib.fastpath_source_digest()).decode() == FASTPATH.digest()


def test_a_module_compiled_from_other_sources_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    lib()
    monkeypatch.setattr(FASTPATH, "digest", lambda: "0" * 64)  # as if fastpath.c changed after the build
    fastpath.state.cache_clear()
    try:
        assert fastpath.enabled() is None
        assert "is stale (fastpath.c or fastpath.h or descriptors.h changed since it was compiled" in fastpath.status()
    finally:
        fastpath.state.cache_clear()

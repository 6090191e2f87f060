"""The vectorised checks agree with a one-descriptor-at-a-time reference (tests/verifier/reference.py).

First on the checks alone: random worlds (who owns and who pinned each frame
of a small memory) and adversarial batches (pin and page edges +-1, kernel
and other tenants' frames, free frames, the end of memory, 64-bit wrap,
multi-fragment packets, packets left open, unknown command bits, checksum
offsets around the packet's end), under three policies, one of which lets a
buffer span several pages (no fast path).  Then through the real kernel:
batches written into a 64-slot ring that wraps, rung one doorbell at a time,
with the verdicts read back from the audit log, the user ring and the DMA
observer; the kernel runs its compiled fast path there wherever it can
exist (tests/verifier/compiled.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ring.descriptors import (
    TX_DESC,
    TXD_CMD_DEXT,
    TXD_CMD_EOP,
    TXD_CMD_IC,
    TXD_CMD_IDE,
    TXD_CMD_IFCS,
    TXD_CMD_RPS,
    TXD_CMD_RS,
    TXD_CMD_VLE,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
)
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE
from tests.verifier import reference as ref
from tests.verifier.compiled import compiled_fast_path
from tests.verifier.conftest import READ, RING, WRITE, Env, RawTx
from verifier.pins import Access, Pin, PinTable
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, Verdicts, check_rx, check_tx, owner_label
from verifier.rules.policy import Policy

FRAMES = 64
KERNEL_FRAMES = 4
SIZE = FRAMES * PAGE_SIZE
TENANT = 0
POLICIES = [
    Policy(),
    Policy(max_buffer=2048, max_frame=1514, max_fragments=4, rx_buffer_size=1024),
    Policy(max_buffer=3 * PAGE_SIZE, max_frame=16288, max_fragments=5, rx_buffer_size=3 * PAGE_SIZE),
]
STATES = ["free", "kernel", "tenant1", "unpinned", "R", "W", "RW", "released"]
ACCESS = {"R": Access.READ, "W": Access.WRITE, "RW": Access.READ_WRITE}
MORE = TXD_CMD_IFCS | TXD_CMD_RS
LENGTHS = [0, 1, 2, 59, 60, 1024, 1514, 2047, 2048, 2049, 4095, 4096, 4097, 8192, 9014, 12288, 12289, 65535]


def build(states: list[str]) -> tuple[PinTable, npt.NDArray[np.int32], ref.World]:
    """A small memory (kernel frames first) and the tenant's pin table, from one state per other frame."""
    owners = np.full(FRAMES, OWNER_FREE, dtype=np.int32)
    owners[:KERNEL_FRAMES] = OWNER_KERNEL
    pins = PinTable(TENANT, FRAMES)
    access: dict[int, int] = {}
    released: set[int] = set()
    for frame, state in enumerate(states, start=KERNEL_FRAMES):
        owners[frame] = {"free": OWNER_FREE, "kernel": OWNER_KERNEL, "tenant1": 1}.get(state, TENANT)
        if state in ACCESS or state == "released":
            handle = frame
            pins.add(Pin(handle, TENANT, frame << PAGE_SHIFT, PAGE_SIZE, ACCESS.get(state, Access.READ),
                         np.array([frame], dtype=np.int64)))  # fmt: skip
            if state == "released":
                assert pins.release(handle) == "released"
                released.add(frame)
            else:
                access[frame] = int(ACCESS[state])
    return pins, owners, ref.World(TENANT, access, frozenset(released), owners.tolist(), SIZE)


@st.composite
def addresses(draw: st.DrawFn, length: int) -> int:
    kind = draw(st.sampled_from(["edge", "edge", "edge", "inside", "inside", "inside", "wrap", "beyond", "any"]))
    if kind == "edge":  # start or end one byte either side of a page edge
        edge = draw(st.sampled_from(range(FRAMES + 2))) * PAGE_SIZE  # sampled: integers() would favour frame 0
        delta = draw(st.sampled_from([-1, 0, 1]))
        addr = edge + delta if draw(st.booleans()) else edge - max(length, 1) + delta
    elif kind == "inside":
        addr = draw(st.sampled_from(range(FRAMES))) * PAGE_SIZE + draw(st.integers(0, PAGE_SIZE - 1))
    elif kind == "wrap":
        addr = 2**64 - draw(st.integers(1, 3 * PAGE_SIZE))
    elif kind == "beyond":
        addr = SIZE + draw(st.integers(-PAGE_SIZE, 2 * PAGE_SIZE))
    else:
        addr = draw(st.integers(0, 2**64 - 1))
    return addr % 2**64


@st.composite
def descriptor(draw: st.DrawFn, cmd: int) -> ref.TxDesc:
    if draw(st.booleans()):  # an ordinary buffer inside one tenant frame: passes wherever that frame is readable
        length = draw(st.integers(1, 1514))
        frame = draw(st.sampled_from(range(KERNEL_FRAMES, FRAMES)))
        addr = frame * PAGE_SIZE + draw(st.integers(0, PAGE_SIZE - length))
        return ref.TxDesc(addr, length, cmd, draw(st.integers(0, 255)), draw(st.integers(0, 255)))
    length = draw(st.sampled_from(LENGTHS) | st.integers(1, 1514) | st.integers(1, PAGE_SIZE) | st.integers(0, 65535))
    if draw(st.integers(0, 9)) == 0:
        cmd |= draw(st.sampled_from([TXD_CMD_DEXT, TXD_CMD_VLE, TXD_CMD_RPS, TXD_CMD_IDE]))
    if draw(st.integers(0, 15)) == 0:
        cmd = draw(st.integers(0, 255))
    return ref.TxDesc(draw(addresses(length)), length, cmd, draw(st.integers(0, 255)), draw(st.integers(0, 255)))


@st.composite
def packet(draw: st.DrawFn, open_end: bool = False) -> list[ref.TxDesc]:
    """One packet of 1..20 fragments, EOP on the last (unless ``open_end``), IC sometimes."""
    frags = draw(st.sampled_from([1] * 8 + [2, 2, 3, 3, 4, 5, 6, 17, 18, 19, 20]))
    ic = TXD_CMD_IC if draw(st.integers(0, 2)) == 0 else 0
    descs = [draw(descriptor(MORE | (ic if i == 0 else 0))) for i in range(frags - 1)]
    last = draw(descriptor((0 if open_end else TXD_CMD_EOP) | MORE | (ic if frags == 1 else 0)))
    descs.append(last)
    if ic:  # checksum offsets around the end of the packet
        total = sum(d.length for d in descs)
        cso = max(0, min(255, total - draw(st.integers(0, 3))))
        css = max(0, min(255, total - draw(st.integers(-1, 2))))
        head = descs[0]
        descs[0] = ref.TxDesc(head.addr, head.length, head.cmd, cso, css)
    return descs


@st.composite
def tx_batches(draw: st.DrawFn) -> list[ref.TxDesc]:
    descs = [d for p in draw(st.lists(packet(), max_size=6)) for d in p]
    if draw(st.booleans()):
        descs += draw(packet(open_end=True))
    return descs


def as_array(descs: list[ref.TxDesc]) -> npt.NDArray[np.void]:
    arr = np.zeros(len(descs), dtype=TX_DESC)
    for i, d in enumerate(descs):
        arr[i]["addr"], arr[i]["length"], arr[i]["cmd"], arr[i]["cso"], arr[i]["css"] = (
            d.addr, d.length, d.cmd, d.cso, d.css)  # fmt: skip
    return arr


def as_reference(v: Verdicts | None, n: int) -> list[ref.Verdict]:
    """The vectorised verdicts in the reference's terms (None from the checks means all accepted)."""
    if v is None:
        return [ref.OK] * n
    out = []
    for i in range(n):
        bad = int(v.bad_byte[i])
        owner = int(v.owner[i])
        out.append(
            ref.Verdict(
                R.name(int(v.reason[i])),
                None if bad == -1 else bad % 2**64,  # int64: addresses at or above 2**63 read negative
                None if owner == NO_OWNER else owner_label(owner, TENANT),
                bool(v.held[i]),
            )
        )
    return out


#: mostly pinned for reading, so that whole packets pass often enough to be judged as packets
STATE_LISTS = st.lists(
    st.sampled_from(["R"] * 10 + ["RW"] * 2 + STATES), min_size=FRAMES - KERNEL_FRAMES, max_size=FRAMES - KERNEL_FRAMES
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=STATE_LISTS, batch=tx_batches(), policy=st.sampled_from(POLICIES))
def test_tx_checks_match_the_reference(states: list[str], batch: list[ref.TxDesc], policy: Policy) -> None:
    pins, owners, world = build(states)
    got = as_reference(check_tx(as_array(batch), pins, owners, SIZE, policy), len(batch))
    assert got == ref.check_tx(batch, world, policy)


@settings(max_examples=200, deadline=None)
@given(
    states=STATE_LISTS,
    addrs=st.lists(st.integers(0, 3 * PAGE_SIZE).flatmap(addresses), max_size=24),
    policy=st.sampled_from(POLICIES),
)
def test_rx_checks_match_the_reference(states: list[str], addrs: list[int], policy: Policy) -> None:
    pins, owners, world = build(states)
    got = as_reference(check_rx(np.array(addrs, dtype=np.uint64), pins, owners, SIZE, policy), len(addrs))
    assert got == ref.check_rx(addrs, world, policy)


def test_empty_batches_pass() -> None:
    pins, owners, _ = build(["R"] * (FRAMES - KERNEL_FRAMES))
    assert check_tx(np.zeros(0, dtype=TX_DESC), pins, owners, SIZE, Policy()) is None
    assert check_rx(np.zeros(0, dtype=np.uint64), pins, owners, SIZE, Policy()) is None


def test_every_fast_path_candidate_agrees_on_a_fully_pinned_memory() -> None:
    """All 1-descriptor packets at every byte offset around every page edge of a pinned memory pass both ways."""
    pins, owners, world = build(["R"] * (FRAMES - KERNEL_FRAMES))
    policy = Policy()
    edges = np.arange(KERNEL_FRAMES, FRAMES + 1) * PAGE_SIZE
    for length in (1, 60, 4095, 4096):
        starts = np.unique(np.concatenate([edges + d for d in (-length - 1, -length, -length + 1, -1, 0, 1)]))
        starts = starts[starts >= 0]
        batch = [ref.TxDesc(int(a), length, TXD_CMD_EOP) for a in starts]
        got = as_reference(check_tx(as_array(batch), pins, owners, SIZE, policy), len(batch))
        assert got == ref.check_tx(batch, world, policy), length


# -- through the real kernel -----------------------------------------------------------------------
@st.composite
def kernel_descriptor(draw: st.DrawFn, targets: dict[str, tuple[int, int]], cmd: int) -> ref.TxDesc:
    """A descriptor aimed at one of the world's regions, at its edges or inside (half of them plainly good)."""
    if draw(st.booleans()):
        base, size = targets["readable"]
        length = draw(st.integers(1, 1500))
        return ref.TxDesc(base + draw(st.integers(0, size - length)), length, cmd)
    name = draw(st.sampled_from(sorted(targets)))
    base, size = targets[name]
    length = draw(st.sampled_from([0, 1, 60, 100, 1500, 4095, 4096, 4097]))
    where = draw(st.sampled_from(["start", "end", "over", "before", "inside"]))
    addr = {
        "start": base,
        "end": base + size - length,
        "over": base + size - length + 1,
        "before": base - 1,
        "inside": base + draw(st.integers(0, max(0, size - 1))),
    }[where]
    return ref.TxDesc(addr % 2**64, length, cmd)


@st.composite
def kernel_batches(draw: st.DrawFn, targets: dict[str, tuple[int, int]]) -> list[list[ref.TxDesc]]:
    batches = []
    if draw(st.integers(0, 3)) == 0:  # a packet kept open one fragment per doorbell, around the held bound
        base, _ = targets["readable"]
        batches += [[ref.TxDesc(base + 64 * i, 64, MORE)] for i in range(draw(st.integers(7, 10)))]
    for _ in range(draw(st.integers(1, 8))):
        descs: list[ref.TxDesc] = []
        for _ in range(draw(st.integers(0, 5))):
            frags = draw(st.sampled_from([1, 1, 2, 3, 19]))
            for i in range(frags):
                last = i == frags - 1 and draw(st.integers(0, 5)) > 0  # sometimes left open
                descs.append(draw(kernel_descriptor(targets, MORE | (TXD_CMD_EOP if last else 0))))
        batches.append(descs)
    return batches


def kernel_world(env: Env) -> tuple[RawTx, dict[str, tuple[int, int]], set[int]]:
    """Alice's queue and the regions a descriptor may aim at, as (bus address, bytes)."""
    alice = env.alice
    tx = RawTx(alice)
    readable = env.buffer(alice, 4 * PAGE_SIZE, READ)
    readable.region.view[:] = (np.arange(readable.region.size) % 253).astype(np.uint8)
    write_only = env.buffer(alice, PAGE_SIZE, WRITE)
    unpinned = env.buffer(alice, PAGE_SIZE, None)
    released = env.buffer(alice, PAGE_SIZE, READ)
    assert released.pin is not None and alice.unpin(released.pin) == "released"
    other = env.bob.alloc_dma(PAGE_SIZE)
    size = env.memory.size
    targets = {
        "readable": (readable.bus, readable.region.size),
        "pool": (tx.q.pool.region.bus, tx.q.pool.region.size),
        "write-only": (write_only.bus, PAGE_SIZE),
        "unpinned": (unpinned.bus, PAGE_SIZE),
        "released": (released.bus, PAGE_SIZE),
        "bob": (other.bus, PAGE_SIZE),
        "kernel": (PAGE_SIZE, PAGE_SIZE),
        "end-of-memory": (size - PAGE_SIZE, PAGE_SIZE),
        "top-of-u64": (2**64 - PAGE_SIZE, PAGE_SIZE),
    }
    return tx, targets, {released.bus >> PAGE_SHIFT}


def reference_world(env: Env, released: set[int]) -> ref.World:
    pins = env.alice.pins
    access = {int(f): int(p.access) for p in pins.pins.values() if p.state == "active" for f in p.frames}
    return ref.World(env.alice.tenant_id, access, frozenset(released), env.memory.owner.tolist(), env.memory.size)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_kernel_verdicts_match_the_reference_over_a_wrapping_ring(make_env: Callable[..., Env], data: Any) -> None:
    env = make_env("verifier")
    tx, targets, released = kernel_world(env)
    fast = compiled_fast_path(required=False)  # the kernel's compiled path is under test too, wherever it can be
    assert getattr(env.kernel.queue("nic0", "tx").handler, "fast", None) is fast
    world = reference_world(env, released)
    policy = env.kernel.policy
    held: list[tuple[int, ref.TxDesc]] = []  # (slot, descriptor) of the packet the kernel holds open
    age = 0
    for descs in data.draw(kernel_batches(targets)):
        free = RING - 1 - len(held)
        descs = descs[:free]
        slots = [tx.put(d.addr, d.length, d.cmd) for d in descs]
        mark_dma, mark_audit, mark_wire = len(env.dma.batches), len(env.audit.records), len(env.wire)
        tx.doorbell()
        if not descs:
            assert len(env.audit.records) == mark_audit and len(env.dma.batches) == mark_dma
            continue
        batch = held + list(zip(slots, descs, strict=True))
        want = ref.check_tx([d for _, d in batch], world, policy)
        carried = bool(held) and want[0].held
        age = (age + 1 if carried else 1) if any(v.held for v in want) else 0
        if age > policy.max_held_doorbells:  # the open packet waited too long
            want = [ref.Verdict("PKT_UNTERMINATED") if v.held else v for v in want]
            age = 0
        records = {r["ring_index"]: r for r in list(env.audit.records)[mark_audit:]}
        assert len(records) == len(list(env.audit.records)[mark_audit:])  # one record per slot
        accepted = []
        for (slot, d), v in zip(batch, want, strict=True):
            if v.held:
                assert slot not in records and tx.status(slot) == 0
            elif v.reason == "OK":
                assert slot not in records and tx.status(slot) == TXD_STAT_DD
                accepted.append((d.addr, d.length))
            else:
                rec = records.pop(slot)
                assert (rec["reason"], rec["detail"].get("owner")) == (v.reason, v.owner), (slot, d, rec)
                assert tx.status(slot) == TXD_STAT_DD | TXD_STAT_REFUSED
        assert not records
        new_dma = env.dma.batches[mark_dma:]
        reads = [
            (int(a), int(n)) for b in new_dma if b.purpose == "tx-data" for a, n in zip(b.addrs, b.lengths, strict=True)
        ]
        assert reads == accepted
        for frame in env.wire[mark_wire:]:
            assert not any(c in frame for c in env.memory.canaries)
        held = [(s, d) for (s, d), v in zip(batch, want, strict=True) if v.held]

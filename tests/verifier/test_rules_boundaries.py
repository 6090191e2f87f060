"""Every descriptor rule of verifier/rules/reasons.py at its exact boundary, in modes verifier and unsafe-inplace.

Each case writes raw descriptors into the tenant's ring and rings the
doorbell itself.  For a descriptor on the passing side of a boundary the
device moves exactly its bytes; for one on the failing side the test checks
what the tenant sees (the refusal mark in its slot), what the kernel wrote
(exactly one audit record with the reason and the slot) and what the device
did (no DMA of the buffer, by the DMA observer).

``unsafe-inplace`` runs the same checks on the user ring in place; its
refusals are neutralised descriptors completed by the device, so the TX mark
appears after the device ran (inline: within the doorbell) and the RX mark
after a frame has consumed the slot.

Packets left open at the tail are held by the kernel (``verifier``:
PKT_UNTERMINATED after ``policy.max_held_doorbells``); ``unsafe-inplace``
rings the device only up to an open packet and judges it again, whole, at
the next doorbell (test_inplace_judges_packets_across_doorbells).
PIN_IN_FLIGHT and the IOMMU reasons are not descriptor rules:
test_invariants.py and test_iommu.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ring import regs
from ring.descriptors import (
    TXD_CMD_DEXT,
    TXD_CMD_IC,
    TXD_CMD_RPS,
    TXD_CMD_VLE,
    TXD_STAT_DD,
)
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE
from tests.conftest import seq_frame
from tests.verifier.conftest import (
    GOOD,
    MORE,
    READ,
    RING,
    WRITE,
    Buffer,
    Env,
    RawRx,
    RawTx,
    assert_rx_refused,
    assert_tx_refused,
    one_record,
)
from verifier.rules.policy import Policy

MODES = ["verifier", "unsafe-inplace"]
POLICY = Policy()
TRAPPED = 60  # bytes of each boundary probe


@pytest.fixture(params=MODES)
def env(request: pytest.FixtureRequest, make_env: Callable[..., Env]) -> Env:
    return make_env(request.param)


def sent_whole(env: Env, buf: Buffer, pieces: list[tuple[int, int]]) -> None:
    """The wire got one frame, the bytes of ``pieces`` ((offset, length) in ``buf``) back to back."""
    want = b"".join(buf.read(off, n) for off, n in pieces)
    assert env.wire == [want]


def fill_pattern(buf: Buffer) -> None:
    buf.region.view[:] = (np.arange(buf.region.size) % 251).astype(np.uint8)


# -- ADDR_NOT_PINNED: last byte inside passes, first byte outside fails ----------------------------
OWNERS = {"kernel": OWNER_KERNEL, "tenant1": 1, "free": OWNER_FREE, "own-unpinned": 0}


def layout(env: Env, owner: str) -> tuple[RawTx, int, int]:
    """A TX queue, a pinned probe that passes and a probe one byte further that leaves the pin.

    Returns (queue, passing address, failing address); the failing probe's
    first bad byte lies in a frame of ``owner``.
    """
    alice = env.alice
    if owner == "kernel":
        low = env.buffer(alice, PAGE_SIZE, READ)  # the first tenant frame, right above kernel memory
        assert low.bus == env.memory.kernel_frames.nbytes
        return RawTx(alice), low.bus, low.bus - 1  # the byte before the pin is the kernel's last
    tx = RawTx(alice)
    if owner == "kernel-above":  # verifier mode: opening the queue put its shadow ring right after the pool
        end = tx.q.pool.region.bus + tx.q.pool.region.size
    elif owner == "own-unpinned":
        end = env.buffer(alice, 2 * PAGE_SIZE, READ, pin_bytes=PAGE_SIZE).bus + PAGE_SIZE
    elif owner == "tenant1":
        end = env.buffer(alice, PAGE_SIZE, READ).end
        assert env.bob.alloc_dma(PAGE_SIZE).bus == end
    else:
        end = env.buffer(alice, PAGE_SIZE, READ).end
    return tx, end - TRAPPED, end - TRAPPED + 1  # last byte end - 1 (inside), then end (outside)


def probe_edge(env: Env, owner: str, owner_code: int) -> None:
    tx, good, bad = layout(env, owner)
    bad_byte = bad + TRAPPED - 1 if bad > good else bad
    assert int(env.memory.owner[bad_byte >> PAGE_SHIFT]) == owner_code
    inside = tx.put(good, TRAPPED)
    outside = tx.put(bad, TRAPPED)
    tx.doorbell()
    assert env.data_accesses("tx-data") == [(good, TRAPPED)]
    assert env.wire == [env.memory.data[good : good + TRAPPED].tobytes()]
    rec = assert_tx_refused(env, tx, outside, "ADDR_NOT_PINNED", check_untouched=False)
    assert rec["detail"]["owner"] == owner.removesuffix("-above")
    assert rec["detail"]["first_bad_byte"] == f"{bad_byte:#x}"
    assert rec["detail"]["frame"] == bad_byte >> PAGE_SHIFT
    assert tx.status(inside) == TXD_STAT_DD
    assert len(env.records()) == 1
    assert not any(c in f for f in env.wire for c in env.memory.canaries)


@pytest.mark.parametrize("owner", list(OWNERS))
def test_not_pinned_at_the_edge(env: Env, owner: str) -> None:
    probe_edge(env, owner, OWNERS[owner])


def test_not_pinned_into_the_shadow_ring(make_env: Callable[..., Env]) -> None:
    """Verifier mode allocates kernel frames (shadow rings) among the tenants': one byte into one is refused."""
    probe_edge(make_env("verifier"), "kernel-above", OWNER_KERNEL)


# -- lengths ---------------------------------------------------------------------------------------
def test_len_zero(env: Env) -> None:
    tx = RawTx(env.alice)
    addr = tx.pool_frame(0, seq_frame(0))
    one = tx.put(addr, 1)
    zero = tx.put(addr, 0)
    tx.doorbell()
    assert env.data_accesses("tx-data") == [(addr, 1)]
    assert_tx_refused(env, tx, zero, "LEN_ZERO")
    assert tx.status(one) == TXD_STAT_DD
    assert len(env.wire) == 1 and len(env.wire[0]) == 60  # TCTL.PSP pads the one byte


def test_len_too_long_at_max_buffer(env: Env) -> None:
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 2 * PAGE_SIZE, READ)
    fill_pattern(buf)
    limit = POLICY.max_buffer
    ok = tx.put(buf.bus, limit)
    long = tx.put(buf.bus, limit + 1)
    tx.doorbell()
    assert env.data_accesses("tx-data") == [(buf.bus, limit)]
    sent_whole(env, buf, [(0, limit)])
    assert_tx_refused(env, tx, long, "LEN_TOO_LONG", check_untouched=False)
    assert tx.status(ok) == TXD_STAT_DD


@pytest.mark.parametrize("extra", [0, 1])
def test_pkt_too_long_at_max_frame(env: Env, extra: int) -> None:
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 3 * PAGE_SIZE, READ)
    fill_pattern(buf)
    last = POLICY.max_frame - 2 * PAGE_SIZE + extra
    pieces = [(0, PAGE_SIZE), (PAGE_SIZE, PAGE_SIZE), (2 * PAGE_SIZE, last)]
    slots = [tx.put(buf.bus + off, n, MORE) for off, n in pieces[:-1]]
    slots.append(tx.put(buf.bus + pieces[-1][0], last, GOOD))
    tx.doorbell()
    if extra == 0:
        sent_whole(env, buf, pieces)
        assert not env.records()
        return
    for slot in slots:
        assert_tx_refused(env, tx, slot, "PKT_TOO_LONG")
    assert env.wire == [] and not env.data_accesses("tx-data")
    assert len(env.records()) == 3


@pytest.mark.parametrize("frags", [POLICY.max_fragments, POLICY.max_fragments + 1])
def test_pkt_too_many_frags(env: Env, frags: int) -> None:
    """18 fragments are a packet; 19 are refused, every fragment with the packet's reason."""
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    fill_pattern(buf)
    pieces = [(i * 100, 100) for i in range(frags)]
    slots = [tx.put(buf.bus + off, n, GOOD if i == frags - 1 else MORE) for i, (off, n) in enumerate(pieces)]
    tx.doorbell()
    if frags <= POLICY.max_fragments:
        sent_whole(env, buf, pieces)
        assert not env.records()
        return
    assert env.wire == [] and not env.data_accesses("tx-data")
    for slot in slots:
        assert_tx_refused(env, tx, slot, "PKT_TOO_MANY_FRAGS")
    assert len(env.records()) == frags


def test_one_bad_fragment_dooms_its_packet_only(env: Env) -> None:
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 2 * PAGE_SIZE, READ, pin_bytes=PAGE_SIZE)
    fill_pattern(buf)
    a = tx.put(buf.bus, 100, MORE)
    bad = tx.put(buf.bus + PAGE_SIZE, 100, MORE)  # own memory, not pinned
    c = tx.put(buf.bus + 200, 100, GOOD)
    good = tx.put(buf.bus + 400, 100, GOOD)  # the next packet is not affected
    tx.doorbell()
    assert_tx_refused(env, tx, bad, "ADDR_NOT_PINNED")
    assert_tx_refused(env, tx, a, "PKT_BAD_FRAGMENT", check_untouched=False)
    assert_tx_refused(env, tx, c, "PKT_BAD_FRAGMENT", check_untouched=False)
    assert env.data_accesses("tx-data") == [(buf.bus + 400, 100)]
    assert tx.status(good) == TXD_STAT_DD
    assert len(env.records()) == 3


def test_too_many_frags_outranks_bad_fragment(env: Env) -> None:
    """A packet over the fragment limit with one unpinned fragment: that one says why, the rest the packet's rule."""
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 2 * PAGE_SIZE, READ, pin_bytes=PAGE_SIZE)
    n = POLICY.max_fragments + 1
    slots = [tx.put(buf.bus + (PAGE_SIZE if i == 3 else 64 * i), 64, GOOD if i == n - 1 else MORE) for i in range(n)]
    tx.doorbell()
    assert_tx_refused(env, tx, slots[3], "ADDR_NOT_PINNED")
    for i, slot in enumerate(slots):
        if i != 3:
            assert_tx_refused(env, tx, slot, "PKT_TOO_MANY_FRAGS", check_untouched=False)
    assert env.wire == [] and not env.data_accesses("tx-data")


# -- packets open at the tail ----------------------------------------------------------------------
def test_open_packet_is_held_until_its_eop(env: Env) -> None:
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    fill_pattern(buf)
    pieces = [(0, 300), (300, 300), (600, 300)]
    first = [tx.put(buf.bus + off, n, MORE) for off, n in pieces[:2]]
    tx.doorbell()
    assert env.wire == [] and not env.records()  # not sent, not refused, nothing audited
    if env.protection == "verifier":
        assert not env.data_accesses("tx-data")  # the kernel holds it: the device has not seen it
        assert [tx.status(s) for s in first] == [0, 0]
    last = tx.put(buf.bus + 600, 300, GOOD)
    tx.doorbell()
    sent_whole(env, buf, pieces)
    assert not env.records()
    assert [tx.status(s) for s in [*first, last]] == [TXD_STAT_DD] * 3


def test_open_packet_that_breaks_a_rule_is_not_held(env: Env) -> None:
    """An open packet already over max_frame is refused at once: holding it could not save it."""
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 3 * PAGE_SIZE, READ)
    slots = [tx.put(buf.bus + i * PAGE_SIZE, PAGE_SIZE, MORE) for i in range(3)]  # 12288 bytes, no EOP
    tx.doorbell()
    for slot in slots:
        assert_tx_refused(env, tx, slot, "PKT_TOO_LONG")
    assert env.wire == []


def test_open_packet_rechecked_when_it_completes(make_env: Callable[..., Env]) -> None:
    """Verifier mode holds fragments in the kernel: a pin released while they wait dooms the packet."""
    env = make_env("verifier")
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    other = env.buffer(env.alice, PAGE_SIZE, READ)
    first = tx.put(buf.bus, 100, MORE)
    tx.doorbell()
    assert buf.pin is not None and env.alice.unpin(buf.pin) == "released"  # held fragments are not in flight
    last = tx.put(other.bus, 100, GOOD)
    tx.doorbell()
    assert_tx_refused(env, tx, first, "PIN_RELEASED")
    assert_tx_refused(env, tx, last, "PKT_BAD_FRAGMENT")
    assert env.wire == [] and not env.data_accesses("tx-data")


@pytest.mark.parametrize("doorbells", [POLICY.max_held_doorbells, POLICY.max_held_doorbells + 1])
def test_open_packet_waits_at_most_max_held_doorbells(make_env: Callable[..., Env], doorbells: int) -> None:
    """One fragment per doorbell: open through ``max_held_doorbells`` doorbells is fine, one more is refused."""
    env = make_env("verifier")
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    fill_pattern(buf)
    slots = []
    for i in range(doorbells):
        slots.append(tx.put(buf.bus + 100 * i, 100, MORE))
        tx.doorbell()
    if doorbells > POLICY.max_held_doorbells:
        for slot in slots:
            assert_tx_refused(env, tx, slot, "PKT_UNTERMINATED")
        assert env.wire == [] and not env.data_accesses("tx-data")
        return
    assert not env.records() and env.wire == []
    slots.append(tx.put(buf.bus + 100 * doorbells, 100, GOOD))
    tx.doorbell()
    sent_whole(env, buf, [(100 * i, 100) for i in range(doorbells + 1)])
    assert not env.records()


def test_inplace_judges_packets_across_doorbells(make_env: Callable[..., Env]) -> None:
    env = make_env("unsafe-inplace")
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, 3 * PAGE_SIZE, READ)
    tx.put(buf.bus, PAGE_SIZE, MORE)
    tx.put(buf.bus + PAGE_SIZE, PAGE_SIZE, MORE)
    tx.doorbell()
    tx.put(buf.bus + 2 * PAGE_SIZE, PAGE_SIZE, GOOD)  # 12288 bytes in all, over max_frame (9014)
    tx.doorbell()
    assert env.wire == [], f"a {len(env.wire[0])}-byte packet left, over max_frame {POLICY.max_frame}"


# -- address arithmetic ----------------------------------------------------------------------------
def test_addr_wrap(env: Env) -> None:
    tx = RawTx(env.alice)
    slot = tx.put(2**64 - 16, 32)
    tx.doorbell()
    rec = assert_tx_refused(env, tx, slot, "ADDR_WRAP")
    assert "first_bad_byte" not in rec["detail"]
    assert env.wire == [] and not env.data_accesses("tx-data")


def test_addr_beyond_memory_at_the_last_frame(env: Env) -> None:
    tx = RawTx(env.alice)
    size = env.memory.size
    free = int(np.count_nonzero(env.memory.owner == OWNER_FREE))
    rest = env.alice.alloc_dma(free * PAGE_SIZE)  # every free frame, up to the end of memory
    assert rest.bus + rest.size == size
    env.alice.pin(rest.vaddr + rest.size - PAGE_SIZE, PAGE_SIZE, READ)  # the last frame of memory
    last = tx.put(size - TRAPPED, TRAPPED)  # ends exactly at the memory size
    past = tx.put(size - TRAPPED + 1, TRAPPED)  # one byte beyond
    far = tx.put(size + PAGE_SIZE, TRAPPED)
    tx.doorbell()
    assert env.data_accesses("tx-data") == [(size - TRAPPED, TRAPPED)]
    assert tx.status(last) == TXD_STAT_DD
    rec = assert_tx_refused(env, tx, past, "ADDR_BEYOND_MEMORY", check_untouched=False)
    assert rec["detail"]["first_bad_byte"] == f"{size:#x}"
    assert_tx_refused(env, tx, far, "ADDR_BEYOND_MEMORY")


# -- access ----------------------------------------------------------------------------------------
def test_access_no_read(env: Env) -> None:
    tx = RawTx(env.alice)
    rx_only = env.buffer(env.alice, PAGE_SIZE, WRITE)
    slot = tx.put(rx_only.bus, 100)
    tx.doorbell()
    rec = assert_tx_refused(env, tx, slot, "ACCESS_NO_READ")
    assert rec["detail"]["owner"] == "own"
    assert env.wire == []


def rx_env(env: Env) -> tuple[RawTx, RawRx]:
    """Alice can send to bob; bob's raw RX ring has nothing posted yet."""
    return RawTx(env.alice), RawRx(env.bob)


def deliver(env: Env, tx: RawTx, count: int = 1) -> None:
    """Alice sends ``count`` good frames to bob (so the device consumes posted RX slots)."""
    for i in range(count):
        tx.send(100 + i)
    tx.doorbell()


def test_access_no_write(env: Env) -> None:
    tx, rx = rx_env(env)
    ro = env.buffer(env.bob, PAGE_SIZE, READ)
    slot = rx.put(ro.bus)
    rx.doorbell()
    deliver(env, tx)
    rec = assert_rx_refused(env, rx, slot, "ACCESS_NO_WRITE")
    if env.protection == "verifier":
        assert rec["detail"]["checked_bytes"] == POLICY.rx_buffer_size
        assert not env.data_accesses("rx-data")  # nothing posted: the frame was missed


def test_rx_checked_over_the_whole_receive_buffer(env: Env) -> None:
    tx, rx = rx_env(env)
    buf = env.buffer(env.bob, 2 * PAGE_SIZE, WRITE, pin_bytes=PAGE_SIZE)
    size = POLICY.rx_buffer_size
    fits = rx.put(buf.bus + PAGE_SIZE - size)  # the whole 2048-byte buffer in the pinned frame
    crosses = rx.put(buf.bus + PAGE_SIZE - size + 1)  # first byte pinned, last byte in the next frame
    rx.doorbell()
    deliver(env, tx, 2)
    assert rx.received(fits) == seq_frame(100)
    rec = one_record(env, "rx", crosses)
    assert rec["reason"] == "ADDR_NOT_PINNED" and rec["detail"]["owner"] == "own-unpinned"
    assert rec["detail"]["first_bad_byte"] == f"{buf.bus + PAGE_SIZE:#x}"
    assert rx.refused(crosses)
    assert not env.touched(buf.bus + PAGE_SIZE, buf.bus + 2 * PAGE_SIZE)
    if env.protection == "verifier":
        assert env.data_accesses("rx-data") == [(buf.bus + PAGE_SIZE - size, 64)]  # the second frame was missed


@pytest.mark.parametrize(
    ("where", "reason"),
    [("kernel", "ADDR_NOT_PINNED"), ("wrap", "ADDR_WRAP"), ("end", "ADDR_BEYOND_MEMORY")],
)
def test_rx_address_arithmetic(env: Env, where: str, reason: str) -> None:
    """RX buffers are judged over all 2048 bytes: the range, not the first byte, must fit."""
    tx, rx = rx_env(env)
    addr = {"kernel": 2 * PAGE_SIZE, "wrap": 2**64 - 1024, "end": env.memory.size - 1024}[where]
    slot = rx.put(addr)
    rx.doorbell()
    deliver(env, tx)
    rec = assert_rx_refused(env, rx, slot, reason)
    assert rec["detail"].get("owner") == ("kernel" if where == "kernel" else None)


def test_rx_buffer_of_another_tenant(env: Env) -> None:
    tx, rx = rx_env(env)
    slot = rx.put(tx.q.pool.region.bus)  # alice's TX pool, seen from bob's queue
    rx.doorbell()
    deliver(env, tx)
    rec = assert_rx_refused(env, rx, slot, "ADDR_NOT_PINNED")
    assert rec["detail"]["owner"] == "tenant0"


# -- command bits and checksum offsets -------------------------------------------------------------
@pytest.mark.parametrize("bit", [TXD_CMD_DEXT, TXD_CMD_VLE, TXD_CMD_RPS], ids=["DEXT", "VLE", "RPS"])
def test_cmd_unsupported(env: Env, bit: int) -> None:
    tx = RawTx(env.alice)
    addr = tx.pool_frame(0, seq_frame(0))
    slot = tx.put(addr, 64, GOOD | bit)
    ok = tx.put(addr, 64, GOOD)
    tx.doorbell()
    assert_tx_refused(env, tx, slot, "CMD_UNSUPPORTED", check_untouched=False)
    assert env.data_accesses("tx-data") == [(addr, 64)]
    assert tx.status(ok) == TXD_STAT_DD


@pytest.mark.parametrize(
    ("cso", "css", "reason"),
    [
        (98, 14, None),  # CSO = len - 2: the checksum's two bytes are the packet's last two
        (99, 14, "CSUM_OFFSET"),  # CSO = len - 1: one byte would land beyond the packet
        (255, 14, "CSUM_OFFSET"),
        (40, 99, None),  # CSS = len - 1
        (40, 100, "CSUM_OFFSET"),  # CSS = len
        (40, 255, "CSUM_OFFSET"),
    ],
)
def test_csum_offsets(env: Env, cso: int, css: int, reason: str | None) -> None:
    tx = RawTx(env.alice)
    addr = tx.pool_frame(0, seq_frame(0, 100))
    slot = tx.put(addr, 100, GOOD | TXD_CMD_IC, cso=cso, css=css)
    tx.doorbell()
    if reason is None:
        assert tx.status(slot) == TXD_STAT_DD and len(env.wire) == 1 and not env.records()
        assert env.nic0.counters.csum_offset_errors == 0
    else:
        assert_tx_refused(env, tx, slot, reason)
        assert env.wire == []


def test_csum_offset_is_judged_on_the_whole_packet(env: Env) -> None:
    """CSO/CSS come from the first descriptor but are checked against the packet: 60 + 60 bytes, CSO 110 passes."""
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    fill_pattern(buf)
    a = tx.put(buf.bus, 60, MORE | TXD_CMD_IC, cso=110, css=14)
    b = tx.put(buf.bus + 60, 60, GOOD)
    bad_first = tx.put(buf.bus, 60, MORE | TXD_CMD_IC, cso=119, css=14)
    bad_second = tx.put(buf.bus + 60, 60, GOOD)
    tx.doorbell()
    assert tx.status(a) == tx.status(b) == TXD_STAT_DD and len(env.wire) == 1
    assert env.data_accesses("tx-data") == [(buf.bus, 60), (buf.bus + 60, 60)]  # the first packet only
    assert_tx_refused(env, tx, bad_first, "CSUM_OFFSET", check_untouched=False)
    assert_tx_refused(env, tx, bad_second, "PKT_BAD_FRAGMENT", check_untouched=False)


# -- lifetime --------------------------------------------------------------------------------------
def test_pin_released(env: Env) -> None:
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    assert buf.pin is not None and env.alice.unpin(buf.pin) == "released"
    slot = tx.put(buf.bus, 100)
    tx.doorbell()
    rec = assert_tx_refused(env, tx, slot, "PIN_RELEASED")
    assert rec["detail"]["owner"] == "own"


# -- ring indices through the tail register --------------------------------------------------------
def ring_event(env: Env, kind: str) -> dict[str, object]:
    (rec,) = env.records(kind)
    assert rec["desc"] is None
    return rec


@pytest.mark.parametrize("kind", ["tx", "rx"])
def test_ring_tail_beyond(env: Env, kind: str) -> None:
    q: RawTx | RawRx
    if kind == "tx":
        q, dev, tail_reg = RawTx(env.alice), env.nic0, regs.TDT
        q.send(0)
    else:
        q, dev, tail_reg = RawRx(env.bob), env.nic1, regs.RDT
        q.put(env.buffer(env.bob, PAGE_SIZE, WRITE).bus)
    q.doorbell(RING)  # tail == ring size: not a slot
    rec = ring_event(env, kind)
    assert rec["reason"] == "RING_TAIL_BEYOND" and rec["ring_index"] == RING
    assert dev.reg(tail_reg) == 0
    assert not env.dma.batches
    q.doorbell(2**16 + 1)  # the device's tail register is 16 bits: this must not alias slot 1
    assert [r["reason"] for r in env.records()] == ["RING_TAIL_BEYOND"] * 2
    assert dev.reg(tail_reg) == 0 and not env.dma.batches
    q.doorbell()  # the same descriptor, now with a good tail, goes through
    assert len(env.records()) == 2
    assert dev.reg(tail_reg) == 1


def test_rx_ring_backwards_and_overrun(env: Env) -> None:
    """The kernel assumes the shorter move: 40 posted, 23 free; +23 is fine, +24 overruns, -5 goes backwards."""
    _, rx = rx_env(env)
    buf = env.buffer(env.bob, 64 * 2048, WRITE)
    for i in range(40):
        rx.put(buf.bus + i * 2048)
    rx.doorbell()
    assert not env.records()
    tail = env.nic1.reg(regs.RDT)
    rx.doorbell(35)
    rx.doorbell((40 + 24) % RING)
    back, over = env.records("rx")
    assert (back["reason"], back["ring_index"]) == ("RING_TAIL_BACKWARDS", 35)
    assert (over["reason"], over["ring_index"]) == ("RING_OVERRUN", 0)
    assert env.nic1.reg(regs.RDT) == tail
    for i in range(40, 63):
        rx.put(buf.bus + i * 2048)
    rx.doorbell(63)  # +23: exactly the free slots
    assert len(env.records()) == 2
    st = env.kernel.queue("nic1", "rx").state
    assert st is not None and st.tail == 63


def test_tx_ring_backwards_behind_held_descriptors(make_env: Callable[..., Env]) -> None:
    env = make_env("verifier")
    tx = RawTx(env.alice)
    buf = env.buffer(env.alice, PAGE_SIZE, READ)
    for i in range(3):
        tx.put(buf.bus + 100 * i, 100, MORE)
    tx.doorbell()  # held in the kernel: slots 0..2 are not done
    tx.doorbell(1)
    (rec,) = env.records("tx")
    assert (rec["reason"], rec["ring_index"]) == ("RING_TAIL_BACKWARDS", 1)


# -- registers -------------------------------------------------------------------------------------
def test_reg_not_doorbell(env: Env) -> None:
    tx = RawTx(env.alice)
    before = env.nic0.regs.copy()
    tx.q.doorbell.write32(regs.TDBAL, 0x1000)  # repoint the ring at kernel memory
    assert np.array_equal(env.nic0.regs, before)
    (rec,) = env.records("register")
    assert rec["reason"] == "REG_NOT_DOORBELL" and rec["detail"]["register"] == "TDBAL"
    assert rec["tenant_name"] == "alice" and rec["nic"] == "nic0"


def test_reg_not_owner(env: Env) -> None:
    rx = RawRx(env.bob)
    before = env.nic1.regs.copy()
    env.alice.map_registers("nic1").write32(rx.handle.tail_offset, 5)
    assert np.array_equal(env.nic1.regs, before)
    (rec,) = env.records("register")
    assert rec["reason"] == "REG_NOT_OWNER" and rec["detail"]["queue_owner"] == "bob"
    assert rec["tenant_name"] == "alice" and rec["detail"]["register"] == "RDT"
    assert not env.dma.batches

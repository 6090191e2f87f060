"""Every chain rule of verifier/rules/virtq.py at its exact boundary: accepted at the limit, refused one past it.

The rig is a real machine's memory and a real pin table: frames 0..31 of the
tenant's region pinned for device read and write, one page read-only, one
write-only, and nothing pinned past them.  Each test writes the descriptor
table (and indirect tables, into memory) and judges the chains on that copy.
"""

from __future__ import annotations

import numpy as np
import pytest

from ring.memory import PAGE_SIZE, PhysicalMemory
from ring.virtio import VIRTQ_DESC, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from verifier.pins import Access, Pin, PinTable
from verifier.rules import reasons as R
from verifier.rules.virtq import ChainVerdicts, check_chains

N = 8  # queue size
NEXT, WRITE, INDIRECT = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT
PAGES_RW = 32


class Rig:
    def __init__(self) -> None:
        self.mem = PhysicalMemory(8 << 20, 1 << 20)
        frames = self.mem.alloc((PAGES_RW + 3) * PAGE_SIZE, 0)
        self.base = frames.phys
        self.pins = PinTable(0, self.mem.frames)
        first = frames.first
        self.pins.add(Pin(1, 0, 0, PAGES_RW * PAGE_SIZE, Access.READ_WRITE, np.arange(first, first + PAGES_RW)))
        self.pins.add(Pin(2, 0, 0, PAGE_SIZE, Access.READ, np.array([first + PAGES_RW])))
        self.pins.add(Pin(3, 0, 0, PAGE_SIZE, Access.WRITE, np.array([first + PAGES_RW + 1])))
        self.read_only = self.base + PAGES_RW * PAGE_SIZE
        self.write_only = self.read_only + PAGE_SIZE
        self.unpinned = self.write_only + PAGE_SIZE  # the tenant's own frame, never pinned
        self.table = np.zeros(N, dtype=VIRTQ_DESC)
        self.next_table = self.base + 16 * PAGE_SIZE  # where indirect tables go

    def buf(self, i: int) -> int:
        return self.base + i * 2048

    def desc(self, i: int, length: int = 64, flags: int = 0, nxt: int = 0, addr: int | None = None) -> None:
        self.table[i] = (self.buf(i) if addr is None else addr, length, flags, nxt)

    def indirect(self, rows: list[tuple[int, int, int]]) -> tuple[int, int]:
        """Write a table of (len, flags, next) rows into memory; its (address, byte length)."""
        t = np.zeros(len(rows), dtype=VIRTQ_DESC)
        for j, (length, flags, nxt) in enumerate(rows):
            t[j] = (self.buf(8 + j % 8), length, flags, nxt)
        addr = self.next_table
        self.mem.data[addr : addr + t.nbytes] = t.view(np.uint8)
        self.next_table += PAGE_SIZE
        return addr, t.nbytes

    def judge(self, *heads: int, tx: bool = True) -> ChainVerdicts:
        return check_chains(self.table.copy(), np.array(heads), self.mem.data, self.pins, self.mem.owner, tx=tx)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def reasons(v: ChainVerdicts) -> list[str]:
    return [R.name(int(c)) for c in v.reason]


def test_a_one_descriptor_chain_passes_and_flattens(rig: Rig) -> None:
    rig.desc(0, 100)
    v = rig.judge(0)
    assert reasons(v) == ["OK"] and v.chain(0)["len"].tolist() == [100]


def test_head_at_size_minus_one_and_size(rig: Rig) -> None:
    rig.desc(N - 1)
    v = rig.judge(N - 1, N)
    assert reasons(v) == ["OK", "VIRTQ_HEAD_BEYOND"]
    assert int(v.bad_index[1]) == N


def test_next_at_size_minus_one_and_size(rig: Rig) -> None:
    rig.desc(0, flags=NEXT, nxt=N - 1)
    rig.desc(N - 1)
    rig.desc(1, flags=NEXT, nxt=N)
    v = rig.judge(0, 1)
    assert reasons(v) == ["OK", "VIRTQ_NEXT_BEYOND"]
    assert int(v.bad_index[1]) == 1 and not bool(v.bad_indirect[1])


def test_a_chain_through_every_descriptor_passes_one_more_step_loops(rig: Rig) -> None:
    for i in range(N - 1):
        rig.desc(i, flags=NEXT, nxt=i + 1)
    rig.desc(N - 1)
    assert reasons(rig.judge(0)) == ["OK"]
    assert rig.judge(0).chain(0).size == N
    rig.desc(N - 1, flags=NEXT, nxt=0)  # the (N+1)th step revisits descriptor 0
    v = rig.judge(0)
    assert reasons(v) == ["VIRTQ_CHAIN_LOOP"] and int(v.bad_index[0]) == 0


def test_a_two_descriptor_loop(rig: Rig) -> None:
    rig.desc(3, flags=NEXT, nxt=4)
    rig.desc(4, flags=NEXT, nxt=3)
    assert reasons(rig.judge(3)) == ["VIRTQ_CHAIN_LOOP"]


def test_unknown_flags(rig: Rig) -> None:
    rig.desc(0, flags=8)
    assert reasons(rig.judge(0)) == ["VIRTQ_FLAGS_UNKNOWN"]


def test_indirect_table_is_walked_and_flattened(rig: Rig) -> None:
    addr, nbytes = rig.indirect([(40, NEXT, 1), (50, NEXT, 2), (60, 0, 0)])
    rig.desc(0, nbytes, INDIRECT, addr=addr)
    v = rig.judge(0)
    assert reasons(v) == ["OK"]
    assert v.chain(0)["len"].tolist() == [40, 50, 60]  # the pointer dropped, the table's buffers in order


@pytest.mark.parametrize(("length", "reason"), [(0, "VIRTQ_INDIRECT_LEN"), (17, "VIRTQ_INDIRECT_LEN"),
                                                (31, "VIRTQ_INDIRECT_LEN"), (32, "OK")])  # fmt: skip
def test_indirect_length_a_nonzero_multiple_of_16(rig: Rig, length: int, reason: str) -> None:
    addr, _ = rig.indirect([(40, NEXT, 1), (50, 0, 0)])
    rig.desc(0, length, INDIRECT, addr=addr)
    assert reasons(rig.judge(0)) == [reason]


def test_indirect_table_of_queue_size_entries_and_one_more(rig: Rig) -> None:
    addr, _ = rig.indirect([(20, NEXT, j + 1) for j in range(N - 1)] + [(20, 0, 0)])
    rig.desc(0, N * 16, INDIRECT, addr=addr)
    assert reasons(rig.judge(0)) == ["OK"]
    rig.desc(0, (N + 1) * 16, INDIRECT, addr=addr)
    assert reasons(rig.judge(0)) == ["VIRTQ_INDIRECT_TOO_BIG"]


def test_next_inside_an_indirect_table_is_bounded_by_its_own_count(rig: Rig) -> None:
    addr, nbytes = rig.indirect([(20, NEXT, 2), (20, 0, 0), (20, 0, 0)])
    rig.desc(0, nbytes, INDIRECT, addr=addr)
    assert reasons(rig.judge(0)) == ["OK"]  # next = count - 1
    addr, nbytes = rig.indirect([(20, NEXT, 3), (20, 0, 0), (20, 0, 0)])
    rig.desc(1, nbytes, INDIRECT, addr=addr)
    v = rig.judge(1)  # next = count (3), though the descriptor table has 8 entries
    assert reasons(v) == ["VIRTQ_NEXT_BEYOND"] and bool(v.bad_indirect[0]) and int(v.bad_index[0]) == 0


def test_a_loop_inside_an_indirect_table(rig: Rig) -> None:
    addr, nbytes = rig.indirect([(20, NEXT, 1), (20, NEXT, 0)])
    rig.desc(0, nbytes, INDIRECT, addr=addr)
    v = rig.judge(0)
    assert reasons(v) == ["VIRTQ_CHAIN_LOOP"] and bool(v.bad_indirect[0])


def test_indirect_inside_indirect_and_indirect_with_next(rig: Rig) -> None:
    _inner, inner_len = rig.indirect([(20, 0, 0)])
    addr, nbytes = rig.indirect([(20, NEXT, 1), (inner_len, INDIRECT, 0)])
    rig.table[7] = (rig.buf(7), 16, 0, 0)
    rig.desc(0, nbytes, INDIRECT, addr=addr)
    v = rig.judge(0)
    assert reasons(v) == ["VIRTQ_INDIRECT_NESTED"] and int(v.bad_index[0]) == 1 and bool(v.bad_indirect[0])
    rig.desc(1, nbytes, INDIRECT | NEXT, nxt=7, addr=addr)
    assert reasons(rig.judge(1)) == ["VIRTQ_INDIRECT_WITH_NEXT"]


def test_the_whole_chain_with_its_indirect_part_is_at_most_the_queue_size(rig: Rig) -> None:
    full, full_len = rig.indirect([(20, NEXT, j + 1) for j in range(N - 1)] + [(20, 0, 0)])
    short, short_len = rig.indirect([(20, NEXT, j + 1) for j in range(N - 2)] + [(20, 0, 0)])
    rig.desc(0, 20, NEXT, nxt=1)
    rig.desc(1, short_len, INDIRECT, addr=short)
    assert reasons(rig.judge(0)) == ["OK"]  # 1 + (N - 1) buffers
    assert rig.judge(0).chain(0).size == N
    rig.desc(1, full_len, INDIRECT, addr=full)
    v = rig.judge(0)  # 1 + N buffers
    assert reasons(v) == ["VIRTQ_CHAIN_TOO_LONG"] and bool(v.bad_indirect[0]) and int(v.bad_index[0]) == N - 1


def test_the_indirect_table_must_be_pinned_for_reading(rig: Rig) -> None:
    rig.desc(0, 32, INDIRECT, addr=rig.unpinned)
    v = rig.judge(0)
    assert reasons(v) == ["ADDR_NOT_PINNED"] and int(v.bad_byte[0]) == rig.unpinned
    rig.desc(0, 32, INDIRECT, addr=rig.write_only)
    assert reasons(rig.judge(0)) == ["ACCESS_NO_READ"]


def test_readable_before_writable(rig: Rig) -> None:
    rig.desc(0, 20, NEXT, nxt=1)
    rig.desc(1, 20, NEXT | WRITE, nxt=2)
    rig.desc(2, 20, WRITE)
    rig.desc(3, 20, WRITE | NEXT, nxt=4)
    rig.desc(4, 20)
    v = rig.judge(0, 3)
    assert reasons(v) == ["OK", "VIRTQ_WRITE_BEFORE_READ"] and int(v.bad_index[1]) == 4


def test_the_summed_length_fits_32_bits(rig: Rig) -> None:
    rig.desc(0, 0x8000_0000, NEXT, nxt=1)
    rig.desc(1, 0x7FFF_FFFF)
    v = rig.judge(0)  # 2**32 - 1: this rule passes; the range rule then refuses the 2 GiB buffers
    assert reasons(v) == ["ADDR_BEYOND_MEMORY"]
    rig.desc(1, 0x8000_0000)
    v = rig.judge(0)  # 2**32
    assert reasons(v) == ["VIRTQ_LEN_OVERFLOW"] and int(v.bad_index[0]) == 1


@pytest.mark.parametrize(("tx", "flags"), [(True, 0), (False, WRITE)])
def test_a_whole_virtio_net_header(rig: Rig, tx: bool, flags: int) -> None:
    rig.desc(0, 12, flags)
    rig.desc(1, 11, flags)
    rig.desc(2, 6, flags | NEXT, nxt=3)  # a header split over two buffers is whole
    rig.desc(3, 6, flags)
    assert reasons(rig.judge(0, 1, 2, tx=tx)) == ["OK", "VIRTQ_NET_HDR_SHORT", "OK"]


def test_tx_header_counts_readable_bytes_only(rig: Rig) -> None:
    rig.desc(0, 11, NEXT, nxt=1)
    rig.desc(1, 100, WRITE)
    assert reasons(rig.judge(0, tx=True)) == ["VIRTQ_NET_HDR_SHORT"]


def test_each_buffer_in_pins_with_the_access_the_device_needs(rig: Rig) -> None:
    rig.desc(0, 64, addr=rig.read_only)  # TX from a read-only pin: fine
    rig.desc(1, 64, addr=rig.write_only)  # TX from a write-only pin: the device may not read it
    rig.desc(2, 64, WRITE, addr=rig.write_only)
    rig.desc(3, 64, WRITE, addr=rig.read_only)
    assert reasons(rig.judge(0, 1, tx=True)) == ["OK", "ACCESS_NO_READ"]
    assert reasons(rig.judge(2, 3, tx=False)) == ["OK", "ACCESS_NO_WRITE"]


def test_a_buffer_running_past_the_pins_names_the_first_bad_byte(rig: Rig) -> None:
    end = rig.write_only + PAGE_SIZE
    rig.desc(0, 100, WRITE, addr=end - 50)
    v = rig.judge(0, tx=False)
    assert reasons(v) == ["ADDR_NOT_PINNED"] and int(v.bad_byte[0]) == end and int(v.bad_index[0]) == 0
    rig.desc(1, 64, addr=rig.mem.size - 32)
    rig.desc(2, 64, addr=2**64 - 32)
    assert reasons(rig.judge(1, 2)) == ["ADDR_BEYOND_MEMORY", "ADDR_WRAP"]


def test_chains_are_judged_independently_in_one_batch(rig: Rig) -> None:
    rig.desc(0, 64)
    rig.desc(1, 64, NEXT, nxt=N)
    rig.desc(2, 64, NEXT, nxt=3)
    rig.desc(3, 64)
    rig.desc(4, 5)
    v = rig.judge(0, 1, 2, 4, 9)
    assert reasons(v) == ["OK", "VIRTQ_NEXT_BEYOND", "OK", "VIRTQ_NET_HDR_SHORT", "VIRTQ_HEAD_BEYOND"]
    assert v.chain(2)["len"].tolist() == [64, 64]

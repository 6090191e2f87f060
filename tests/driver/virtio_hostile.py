"""Hostile TX chains for QEMU's virtio-net, each with what QEMU 7.2 was measured to do with it.

The facts of docs/peers.md's table "What QEMU's virtio-net does with hostile
chains", held by tests/driver/test_qemu_virtio_hostile.py so the page cannot
drift.  Every chain goes on transmitq1 of a freshly reset device whose queue
holds ``QUEUE_SIZE`` (8) descriptors; the first two buffers hold a zeroed
12-byte virtio_net_hdr and a 64-byte frame.  QEMU's checks are in
hw/virtio/virtio.c (``virtqueue_split_pop``, ``virtqueue_split_read_next_desc``,
``virtqueue_get_head``, ``virtqueue_map_desc``) and hw/net/virtio-net.c
(``virtio_net_flush_tx``); ``virtio_error`` prints its message on stderr
and, for a VERSION_1 device, sets DEVICE_NEEDS_RESET and stops the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ring import virtio
from tests.driver.virtio_rig import QUEUE_SIZE

NEXT, WRITE, INDIRECT = virtio.VIRTQ_DESC_F_NEXT, virtio.VIRTQ_DESC_F_WRITE, virtio.VIRTQ_DESC_F_INDIRECT
HDR = virtio.VIRTIO_NET_HDR_SIZE
FRAME = bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + bytes(range(50))  # 64 bytes
KERNEL_ADDRESS = 0x1000  # inside the kernel's region of PhysicalMemory (the bottom megabyte in the rig)
TABLE, INNER = 4, 6  # buffers holding indirect tables

# what QEMU does
BROKEN = "broken"  # virtio_error: the message on stderr, DEVICE_NEEDS_RESET, the chain never completes
SENT = "sent"  # the chain completes and frames go on the wire
ABORT = "abort"  # QEMU itself dies (an assertion)


class RawQueue(Protocol):
    """A transmitq1 the chains are written into: QEMU's raw queue (tests/driver/virtio_rig.py ``RawQueue``) or a
    tenant's queue in front of the kernel (tests/verifier/test_virtio_hostile_verifier.py)."""

    def buffer(self, i: int) -> int: ...

    def write(self, phys: int, data: bytes) -> None: ...

    def set_desc(self, i: int, addr: int, length: int, flags: int = 0, next_: int = 0) -> None: ...

    def table(self, phys: int, entries: list[tuple[int, int, int, int]]) -> None: ...

    def publish(self, heads: list[int], idx_step: int | None = None) -> None: ...


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the chain, in words (the docs table's first column)
    build: Callable[[RawQueue], None]
    qemu: str  # BROKEN, SENT or ABORT
    message: str = ""  # QEMU's stderr line without the "qemu-system-x86_64: " prefix
    wire: tuple[int, ...] = ()  # lengths of the frames QEMU sent
    verifier_rule: str = ""  # the verifier rule (issue 16 section 3) that refuses it before QEMU sees it


def _buffers(q: RawQueue) -> tuple[int, int]:
    q.write(q.buffer(0), bytes(HDR))
    q.write(q.buffer(1), FRAME)
    return q.buffer(0), q.buffer(1)


def loop_next(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.set_desc(0, h, HDR, NEXT, 1)
    q.set_desc(1, d, len(FRAME), NEXT, 0)
    q.publish([0])


def loop_indirect(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.table(q.buffer(TABLE), [(h, HDR, NEXT, 1), (d, len(FRAME), NEXT, 0)])
    q.set_desc(0, q.buffer(TABLE), 2 * virtio.VIRTQ_DESC_SIZE, INDIRECT)
    q.publish([0])


def chain_size_plus_1(q: RawQueue) -> None:
    """0 -> 1 -> ... -> 7 -> 0: size + 1 descriptors walked (a direct chain that long must revisit one)."""
    h, d = _buffers(q)
    q.set_desc(0, h, HDR, NEXT, 1)
    for k in range(1, QUEUE_SIZE):
        q.set_desc(k, d + 8 * (k - 1), 8, NEXT, (k + 1) % QUEUE_SIZE)
    q.publish([0])


def indirect_size_plus_1(q: RawQueue) -> None:
    """An indirect table of size + 1 entries, no loop: the header and the frame in 8-byte pieces."""
    h, d = _buffers(q)
    pieces = [(d + 8 * k, 8, NEXT, k + 2) for k in range(QUEUE_SIZE)]
    pieces[-1] = (pieces[-1][0], 8, 0, 0)
    entries = [(h, HDR, NEXT, 1), *pieces]
    q.table(q.buffer(TABLE), entries)
    q.set_desc(0, q.buffer(TABLE), len(entries) * virtio.VIRTQ_DESC_SIZE, INDIRECT)
    q.publish([0])


def indirect_in_indirect(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.table(q.buffer(INNER), [(d, len(FRAME), 0, 0)])
    q.table(q.buffer(TABLE), [(h, HDR, NEXT, 1), (q.buffer(INNER), virtio.VIRTQ_DESC_SIZE, INDIRECT, 0)])
    q.set_desc(0, q.buffer(TABLE), 2 * virtio.VIRTQ_DESC_SIZE, INDIRECT)
    q.publish([0])


def write_before_read(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.set_desc(0, h, HDR, WRITE | NEXT, 1)
    q.set_desc(1, d, len(FRAME))
    q.publish([0])


def next_is_size(q: RawQueue) -> None:
    h, _ = _buffers(q)
    q.set_desc(0, h, HDR, NEXT, QUEUE_SIZE)
    q.publish([0])


def indirect_len_not_16(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.table(q.buffer(TABLE), [(h, HDR, NEXT, 1), (d, len(FRAME), 0, 0)])
    q.set_desc(0, q.buffer(TABLE), 20, INDIRECT)
    q.publish([0])


def avail_jump(q: RawQueue) -> None:
    """One valid chain in ring[0], but avail idx moved by size + 1 (the other slots hold head 0)."""
    h, d = _buffers(q)
    q.set_desc(0, h, HDR, NEXT, 1)
    q.set_desc(1, d, len(FRAME))
    q.publish([0], idx_step=QUEUE_SIZE + 1)


def head_is_size(q: RawQueue) -> None:
    _buffers(q)
    q.publish([QUEUE_SIZE])


def zero_length(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.set_desc(0, h, 0, NEXT, 1)
    q.set_desc(1, d, len(FRAME))
    q.publish([0])


def kernel_memory(q: RawQueue) -> None:
    h, _ = _buffers(q)
    q.set_desc(0, h, HDR, NEXT, 1)
    q.set_desc(1, KERNEL_ADDRESS, len(FRAME))
    q.publish([0])


def only_writable(q: RawQueue) -> None:
    h, _ = _buffers(q)
    q.set_desc(0, h, HDR + len(FRAME), WRITE)
    q.publish([0])


def length_overflow(q: RawQueue) -> None:
    h, d = _buffers(q)
    q.set_desc(0, h, HDR, NEXT, 1)
    q.set_desc(1, d, 0xFFFF_FFFF)
    q.publish([0])


def short_header(q: RawQueue) -> None:
    h, _ = _buffers(q)
    q.set_desc(0, h, 4)
    q.publish([0])


LOOP = "no chain revisits a descriptor"
CASES = [
    Case("loop_next", "a loop through `next` (0 → 1 → 0)", loop_next, BROKEN, "Looped descriptor",
         verifier_rule=LOOP),
    Case("loop_indirect", "a loop inside an indirect table", loop_indirect, BROKEN, "Looped descriptor",
         verifier_rule=LOOP),
    Case("chain_size_plus_1", "a chain of size + 1 descriptors (0 → 1 → … → 7 → 0)", chain_size_plus_1, BROKEN,
         "Looped descriptor", verifier_rule="no chain longer than the queue size"),
    Case("indirect_size_plus_1", "an indirect table of size + 1 entries, no loop", indirect_size_plus_1, SENT,
         wire=(len(FRAME),), verifier_rule="an indirect chain no longer than the queue size"),
    Case("indirect_in_indirect", "an INDIRECT descriptor inside an indirect table", indirect_in_indirect, SENT,
         wire=(virtio.VIRTQ_DESC_SIZE,), verifier_rule="no INDIRECT flag inside an indirect table"),
    Case("write_before_read", "a device-writable descriptor before a readable one", write_before_read, BROKEN,
         "Incorrect order for descriptors", verifier_rule="device-readable descriptors precede writable ones"),
    Case("next_is_size", "`next` = queue size", next_is_size, BROKEN, f"Desc next is {QUEUE_SIZE}",
         verifier_rule="every head and `next` inside the table"),
    Case("indirect_len_not_16", "an indirect table of 20 bytes (not a multiple of 16)", indirect_len_not_16,
         BROKEN, "Invalid size for indirect buffer table", verifier_rule="indirect length a multiple of 16"),
    Case("avail_jump", "avail idx moved by size + 1", avail_jump, SENT, wire=(len(FRAME),) * (QUEUE_SIZE + 1),
         verifier_rule="the avail index moved by at most the queue size"),
    Case("head_is_size", "an avail entry (head) = queue size", head_is_size, BROKEN,
         f"Guest says index {QUEUE_SIZE} is available", verifier_rule="every head and `next` inside the table"),
    Case("zero_length", "a descriptor of length 0", zero_length, BROKEN,
         "virtio: zero sized buffers are not allowed", verifier_rule="buffers in the tenant's pins"),
    Case("kernel_memory", "a TX buffer in kernel memory (physical 0x1000)", kernel_memory, SENT,
         wire=(len(FRAME),), verifier_rule="each buffer's whole range in the tenant's pins, readable"),
    Case("only_writable", "a TX chain with only a device-writable descriptor", only_writable, BROKEN,
         "virtio-net header not in first element", verifier_rule="TX chains start with a complete header"),
    Case("length_overflow", "a buffer of 2^32 - 1 bytes", length_overflow, BROKEN,
         "virtio: bogus descriptor or out of resources", verifier_rule="each buffer's whole range in the pins"),
    Case("short_header", "a TX chain of 4 bytes (shorter than the 12-byte header)", short_header, ABORT,
         "../../util/iov.c:269: iov_copy: Assertion `offset == 0' failed.",
         verifier_rule="TX chains start with a complete header"),
]  # fmt: skip
BY_NAME = {case.name: case for case in CASES}

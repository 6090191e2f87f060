"""Is an audit record's reason true?  Judged from ground truth, per reason name, vectorised per batch.

Issue 4's audit rule is "exactly one record with the right reason".  The
oracle cannot ask the verifier which reason is right (it imports nothing of
verifier/), so "right" is defined here as: the record's reason is a *true
statement* about the refused descriptor or operation, judged from what the
oracle knows independently -- the shared ABI (ring/: descriptor fields, the
datasheet's command bits, register offsets, PAGE_SIZE), the true size of
physical memory, the real ring sizes, and the oracle's own pin reference
(``Oracle.pinned``: what the queue's owner pinned with which access, and
``Oracle.bus_pins``: at which device address).  Where a record names a
``first_bad_byte``, that byte must lie in the range, in a frame the reason
describes, and every byte before it must be pinned with the access the
device needs (so the named byte is the first bad one, at frame granularity).

Reason names are data: a record span carries its code -> name table, and
``PREDICATES`` / ``NOT_JUDGED`` are keyed by name.  A name in neither table
is itself a problem (an unknown reason cannot be judged true).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from fuzz.oracle import pin_claims
from fuzz.oracle.rules import RuleBook, descriptor_rules
from ring import indices, regs
from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_SUPPORTED
from ring.memory import PAGE_SHIFT, PAGE_SIZE, owner_name

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

#: Pin-reference bits beyond the access bits (1 device read, 2 device write), see ``Oracle.grant``.
ACCESS_BITS = 0x03
RELEASED = 0x40  # the owner's pin on the frame was released (unpin, or free)
UNPIN_ASKED = 0x80  # the owner asked to unpin while DMA was in flight: the kernel lets go whenever it is done

#: The largest receive buffer the 8254x can be programmed with (RCTL.BSIZE with BSEX, table 13-66): an
#: RX record that does not state its ``checked_bytes`` is judged against this bound.
MAX_RX_BUFFER = max(regs.RCTL_BSIZE_BYTES.values())
_TOP = np.uint64(0xFFFF_FFFF_FFFF_FFFF)

#: Reasons not judged, with why: none of them is an address, length, access, IOMMU or wrap claim.
NOT_JUDGED: Mapping[str, str] = {
    "OK": "not a refusal",
    "PKT_UNTERMINATED": "judged per doorbell, not per record: fuzz/oracle/held.py counts the doorbells a packet waits",
    "PIN_IN_FLIGHT": "in-flight references are the kernel's own bookkeeping; nothing was refused to the device",
    **{
        name: "AF_XDP format: not produced by the e1000 arena (fuzz/xdp_cases.py compares with the kernel's rule)"
        for name in (
            "XDP_ADDR_OUT_OF_UMEM",
            "XDP_CHUNK_CROSSED",
            "XDP_END_OUT_OF_UMEM",
            "XDP_OPTIONS_UNKNOWN",
            "XDP_METADATA_WITHOUT_LEN",
            "XDP_METADATA_FLAGS_UNKNOWN",
            "XDP_METADATA_CSUM_BEYOND_LEN",
            "XDP_METADATA_LAUNCH_TIME_OUTSIDE",
        )
    },
    **{
        name: "RDMA verbs: not produced by the e1000 arena (fuzz/verbs_differential.py checks them)"
        for name in (
            "VERBS_TOO_MANY_SGE",
            "VERBS_LKEY_UNKNOWN",
            "VERBS_LKEY_OTHER_PD",
            "VERBS_SGE_OUTSIDE_MR",
            "VERBS_NO_LOCAL_WRITE",
            "VERBS_RKEY_UNKNOWN",
            "VERBS_RKEY_OTHER_PD",
            "VERBS_RKEY_NO_ACCESS",
            "VERBS_REMOTE_OUTSIDE_MR",
            "VERBS_OPCODE_UNSUPPORTED",
        )
    },
    **{
        name: "virtio split virtqueues: not produced by the e1000 arena (virtio fuzz classes: issue 16 section 4)"
        for name in (
            "VIRTQ_AVAIL_JUMP",
            "VIRTQ_HEAD_BEYOND",
            "VIRTQ_NEXT_BEYOND",
            "VIRTQ_CHAIN_LOOP",
            "VIRTQ_CHAIN_TOO_LONG",
            "VIRTQ_INDIRECT_LEN",
            "VIRTQ_INDIRECT_TOO_BIG",
            "VIRTQ_INDIRECT_NESTED",
            "VIRTQ_INDIRECT_WITH_NEXT",
            "VIRTQ_WRITE_BEFORE_READ",
            "VIRTQ_LEN_OVERFLOW",
            "VIRTQ_NET_HDR_SHORT",
            "VIRTQ_FLAGS_UNKNOWN",
        )
    },
}


@dataclass(frozen=True)
class Reference:
    """Ground truth for one queue owner at the moment a run of records was written."""

    table: npt.NDArray[np.uint8]  # access bits (+ RELEASED, UNPIN_ASKED) per physical frame
    bus: Mapping[int, tuple[int, int]]  # device page -> (frame, access bits)
    memory_size: int
    #: the memory controller's owner of every frame (ring.memory.PhysicalMemory.owner), when known: a record's
    #: ``owner`` claim is judged against it (None: not judged).  Frames change owner only by an allocation or a
    #: free, steps that refuse no descriptor, so the owner after a step is the owner of its records' moment.
    owner: npt.NDArray[np.int32] | None = None

    @cached_property
    def bus_table(self) -> tuple[I64, I64]:
        """``bus`` as sorted device pages and their (frame, access) rows, for vectorised look-ups."""
        pages = np.fromiter(self.bus.keys(), dtype=np.int64, count=len(self.bus))
        order = np.argsort(pages)
        return pages[order], np.array(list(self.bus.values()), dtype=np.int64).reshape(-1, 2)[order]


@dataclass
class Rows:
    """Records of one kind as columns; any column may be None when the records do not carry it."""

    seq: int
    nic: str
    kind: str  # "tx", "rx", "iommu", "register", ...
    tenant: int | None  # the queue's (device's) owner in the oracle's ground truth
    addr: U64 | None = None
    length: I64 | None = None  # TX: descriptor length; RX: checked bytes (-1: not stated); IOMMU: access length
    cmd: npt.NDArray[np.uint8] | None = None
    bad_byte: I64 | None = None  # first_bad_byte, -1 when none
    write: bool | None = None
    detail: Mapping[str, Any] | None = None  # a single event record's detail (register, ring)
    record_tenant: int | None = None  # the tenant the record names (register events)
    ring_size: int | None = None  # the real size of the record's ring, when the oracle watches it
    tails: frozenset[int] = frozenset()  # tail register offsets of the queues this record's tenant owns on its NIC
    #: packet-level TX columns: the ring slot each record names and the checksum fields of its descriptor
    slot: I64 | None = None
    cso: I64 | None = None
    css: I64 | None = None
    #: the oracle's rule book (None: the kernel claims no packet rule, packet-level reasons go unjudged)
    rules: RuleBook | None = None
    #: each row's ``detail.owner`` claim (``kernel``, ``free``, ``tenantN``, ``own``, ``own-unpinned``; "": none)
    owner: npt.NDArray[np.str_] | None = None
    #: every row's reason (code, and code -> name), set by ``judge``: a packet's records are judged together
    codes: npt.NDArray[np.uint8] | None = None
    names: Mapping[int, str] | None = None


Verdict = tuple[Mask, Callable[[int], str]]  # per row: true?  and the contradicting fact of row i
Predicate = Callable[[Rows, I64, Reference], Verdict]


def _u64(values: I64) -> U64:
    return values.astype(np.int64, copy=False).view(np.uint64)


def _need(rows: Rows) -> int:
    return 2 if rows.kind == "rx" or rows.write else 1


def _span(rows: Rows, i: I64) -> tuple[U64, U64]:
    """Start and range length of rows ``i``; an RX row without checked bytes gets the datasheet maximum."""
    assert rows.addr is not None and rows.length is not None
    length = rows.length[i]
    if rows.kind == "rx":
        length = np.where(length < 0, MAX_RX_BUFFER, length)
    return rows.addr[i], length.astype(np.uint64)


def _wraps(addr: U64, length: U64) -> Mask:
    """``addr + length`` does not fit in 64 bits (the rule's wording: the end wraps past 2**64)."""
    return (length > 0) & (addr > _TOP - length)


def _frames_ok(first: I64, last: I64, table: npt.NDArray[np.uint8], good: Callable[[Any], Mask]) -> Mask:
    """Whether every frame ``first..last`` (per row; empty when last < first) satisfies ``good``."""
    if first.size == 0:
        return np.ones(0, dtype=bool)
    width = int((last - first).max()) + 1
    if width <= 0:
        return np.ones(first.size, dtype=bool)
    if width == 1:  # the common case: at most one frame per row (np.clip is slow on small arrays: min/max instead)
        inside1 = last >= first
        at = np.minimum(np.maximum(np.where(inside1, first, 0), 0), table.size - 1)
        return ~inside1 | good(table[at])
    frames = first[:, None] + np.arange(width)[None, :]
    inside = frames <= last[:, None]
    frames = np.minimum(np.maximum(np.where(inside, frames, 0), 0), table.size - 1)
    return np.all(~inside | good(table[frames]), axis=1)


def _owner_labels(truth: npt.NDArray[np.int32], tenant: int | None, own: str) -> npt.NDArray[np.str_]:
    """The ``owner`` label the audit schema gives frames of these ground-truth owners: ``own`` for the queue
    owner's frames (the reason decides which of ``own`` / ``own-unpinned``), else ``kernel``, ``free``, ``tenantN``."""
    if truth.size == 0:
        return np.zeros(0, dtype=np.str_)
    one = int(truth[0])
    if bool((truth == one).all()):  # the common case, a batch aimed at one owner's frames: no sort
        label = own if one == tenant else owner_name(one)
        return np.full(truth.size, label, dtype=f"<U{max(1, len(label))}")
    codes = np.unique(truth)  # sorted; the position of each owner in it picks its label (np.unique's inverse)
    labels = [own if code == tenant else owner_name(code) for code in codes.tolist()]
    return np.array(labels, dtype=np.str_)[np.searchsorted(codes, truth.reshape(-1))]


FrameBad = Callable[[Any, int], Mask]  # per pin-reference byte (and the access the device needs): as the reason says


def _claim_status(
    addr: U64, length: U64, bad: U64, ref: Reference, need: int, frame_bad: FrameBad
) -> tuple[npt.NDArray[np.uint8], I64]:
    """Per row the first fact that contradicts a pin/access claim (``pin_claims.TRUE`` .. ``FRAME``: no first bad
    byte named, the byte outside the range or memory, a frame before it without ``need``, its frame not as the
    reason says) and the byte's frame (0 unless in range and memory): whole-batch numpy, the semantics the compiled
    pass (fuzz/oracle/pinclaim.c) is held to."""
    named = bad != _TOP
    inside = named & (bad >= addr) & (bad - addr < length) & (bad < np.uint64(ref.memory_size))
    frame = np.where(inside, bad >> np.uint64(PAGE_SHIFT), 0).astype(np.int64)
    first = (addr >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    last = np.where(inside & (bad > addr), (bad - np.uint64(1)) >> np.uint64(PAGE_SHIFT), 0).astype(np.int64)
    last = np.where(inside & (bad > addr), last, first - 1)
    pinned_before = _frames_ok(first, last, ref.table, lambda t: (t & need) != 0)
    status = np.full(addr.size, pin_claims.FRAME, dtype=np.uint8)
    status[frame_bad(ref.table[frame], need)] = pin_claims.TRUE
    status[~pinned_before] = pin_claims.BEFORE
    status[~inside] = pin_claims.OUTSIDE
    status[~named] = pin_claims.UNNAMED
    return status, frame


def _bad_byte_claim(
    rows: Rows, i: I64, ref: Reference, frame_bad: FrameBad, own: str = "own", mine: bool = False
) -> Verdict:
    """The shared part of the pin/access reasons: the named byte is in the range, in memory, in a frame
    ``frame_bad`` says is bad, and every byte before it lies in frames pinned with the needed access.

    The record's ``owner`` names that frame's ground-truth owner (docs/audit-log.md), the queue owner's own
    frames as ``own`` (the label ``own-unpinned`` with ADDR_NOT_PINNED: pass ``own``); ``mine``: the reason is
    about the owner's own pin, so the frame must be the owner's (ACCESS_NO_*, PIN_RELEASED).  The per-row facts
    come from the compiled pass when it is loaded and sure (fuzz/oracle/pin_claims.py), else ``_claim_status``.
    """
    addr, length = _span(rows, i)
    bad = _u64(rows.bad_byte[i]) if rows.bad_byte is not None else np.full(i.size, _TOP)
    need = _need(rows)
    judged = pin_claims.judge(addr, length, bad, ref.table, ref.memory_size, need, _lut(frame_bad, need))
    status, frame = judged if judged is not None else _claim_status(addr, length, bad, ref, need, frame_bad)
    ok = status == pin_claims.TRUE  # (true implies the byte is in range and memory: its frame's owner is judged)
    owned = np.ones(i.size, dtype=bool)
    truth = expected = claimed = None
    if ref.owner is not None and rows.owner is not None:
        truth = ref.owner[frame]
        expected = _owner_labels(truth, rows.tenant, own)
        claimed = rows.owner[i]
        owned = (claimed == expected) & ((truth == rows.tenant) | (not mine))
        ok &= owned

    def fact(j: int) -> str:
        s = int(status[j])
        if s == pin_claims.UNNAMED:
            return "the record names no first_bad_byte"
        b, a, n = int(bad[j]), int(addr[j]), int(length[j])
        if s == pin_claims.OUTSIDE:
            return f"first_bad_byte {b:#x} is not a byte of [{a:#x}, {a + n:#x}) inside memory"
        bits = int(ref.table[frame[j]])
        if s == pin_claims.BEFORE:
            return f"a byte before first_bad_byte {b:#x} is not pinned with access {need} either"
        if not owned[j] and truth is not None and expected is not None and claimed is not None:
            if str(claimed[j]) != str(expected[j]):
                return f"it names owner {str(claimed[j])!r}, and frame {int(frame[j])} is {str(expected[j])!r}"
            return f"frame {int(frame[j])} is {owner_name(int(truth[j]))}'s, not the queue owner's own"
        return f"frame {int(frame[j])} holds pin bits {bits:#x} in the oracle's reference"

    return ok, fact


@functools.cache
def _lut(frame_bad: FrameBad, need: int) -> npt.NDArray[np.uint8]:
    """``frame_bad`` of every pin-reference byte value: the compiled pass's table, made by the predicate itself."""
    return np.ascontiguousarray(frame_bad(np.arange(256, dtype=np.uint8), need), dtype=np.uint8)


def _unpinned(t: Any, need: int) -> Mask:
    """ADDR_NOT_PINNED's frame: no pin of the owner, or an unpin under way."""
    return ((t & ACCESS_BITS) == 0) | ((t & UNPIN_ASKED) != 0)


def _released(t: Any, need: int) -> Mask:
    """PIN_RELEASED's frame: pinned once without the access now and released, or an unpin under way."""
    return (((t & need) == 0) & ((t & RELEASED) != 0)) | ((t & UNPIN_ASKED) != 0)


def _without_access(t: Any, need: int) -> Mask:
    """ACCESS_NO_*'s frame: pinned, but without the access (or an unpin under way)."""
    return (((t & ACCESS_BITS) != 0) & ((t & need) == 0)) | ((t & UNPIN_ASKED) != 0)


def not_pinned(rows: Rows, i: I64, ref: Reference) -> Verdict:
    """ADDR_NOT_PINNED: the first bad byte's frame has no pin of the owner (or an unpin is under way)."""
    return _bad_byte_claim(rows, i, ref, _unpinned, own="own-unpinned")


def pin_released(rows: Rows, i: I64, ref: Reference) -> Verdict:
    """PIN_RELEASED: that frame is the owner's own, its pin was the owner's and was released (or its unpin is
    under way).  A released frame that went back to the allocator and on to another tenant is that tenant's:
    ADDR_NOT_PINNED names it (docs/verifier.md, code 50: "the tenant's own, was pinned once")."""
    return _bad_byte_claim(rows, i, ref, _released, mine=True)


def access_missing(kind: str) -> Predicate:
    """ACCESS_NO_READ (TX) / ACCESS_NO_WRITE (RX): that frame is pinned, but without the access."""

    def judge(rows: Rows, i: I64, ref: Reference) -> Verdict:
        ok, fact = _bad_byte_claim(rows, i, ref, _without_access, mine=True)
        if rows.kind != kind:
            return np.zeros(i.size, dtype=bool), lambda _j: f"a {rows.kind} record, the rule is about {kind}"
        return ok, fact

    return judge


def addr_wrap(rows: Rows, i: I64, ref: Reference) -> Verdict:
    addr, length = _span(rows, i)
    ok = _wraps(addr, length)
    return ok, lambda j: f"{int(addr[j]):#x} + {int(length[j])} fits in 64 bits"


def beyond_memory(rows: Rows, i: I64, ref: Reference) -> Verdict:
    """ADDR_BEYOND_MEMORY: no wrap, the range ends past memory; a named first_bad_byte is past memory and in it."""
    addr, length = _span(rows, i)
    size = np.uint64(ref.memory_size)
    ends_past = ~_wraps(addr, length) & (addr + length > size)
    if rows.bad_byte is not None:
        bad = _u64(rows.bad_byte[i])
        named = rows.bad_byte[i] != -1
        ends_past &= ~named | ((bad >= size) & (bad >= addr) & (bad - addr < length))
    return ends_past, lambda j: f"[{int(addr[j]):#x}, +{int(length[j])}) lies within {ref.memory_size:#x} bytes"


def len_zero(rows: Rows, i: I64, ref: Reference) -> Verdict:
    assert rows.length is not None
    length = rows.length[i]
    return (length == 0) & (rows.kind == "tx"), lambda j: f"a {rows.kind} descriptor of length {int(length[j])}"


def len_too_long(rows: Rows, i: I64, ref: Reference) -> Verdict:
    """LEN_TOO_LONG: longer than the limit the record states (``max_buffer``), else one page (the largest chunk)."""
    assert rows.length is not None
    limit = int((rows.detail or {}).get("max_buffer", PAGE_SIZE))
    length = rows.length[i]
    return (length > limit) & (rows.kind == "tx"), lambda j: f"length {int(length[j])} <= {limit}"


def cmd_unsupported(rows: Rows, i: I64, ref: Reference) -> Verdict:
    """CMD_UNSUPPORTED: a command bit outside the legacy bits this device implements (ring.descriptors)."""
    if rows.cmd is None:
        return np.zeros(i.size, dtype=bool), lambda _j: "the record carries no cmd field"
    cmd = rows.cmd[i]
    ok = (cmd & np.uint8(~TXD_CMD_SUPPORTED & 0xFF)) != 0
    return ok, lambda j: f"cmd {int(cmd[j]):#04x} uses only supported bits {TXD_CMD_SUPPORTED:#04x}"


@dataclass(frozen=True)
class Packets:
    """The TX packets a run of refusal records describes: a packet is refused whole, so each of its fragments has
    a record, in ring order, on consecutive slots, the last one with EOP (or none: an open packet refused)."""

    of: I64  # per row: its packet
    first: I64  # per packet: its first row
    fragments: I64
    length: I64
    complete: Mask  # per packet: its last fragment carries EOP
    other: Mask  # per packet: some record of it has a reason of its own (neither PKT_BAD_FRAGMENT nor unknown)


def packets(rows: Rows) -> Packets:
    """Group ``rows`` into packets by EOP and slot contiguity (over the ring's end too), vectorised."""
    assert rows.slot is not None and rows.cmd is not None and rows.length is not None
    n = rows.slot.size
    eop = (rows.cmd & np.uint8(TXD_CMD_EOP)) != 0
    slot = rows.slot
    after = slot[:-1] + 1
    if rows.ring_size:
        after %= rows.ring_size
    starts = np.ones(n, dtype=bool)
    starts[1:] = eop[:-1] | (slot[1:] != after)
    of = np.cumsum(starts) - 1
    first = starts.nonzero()[0]
    last = np.append(first[1:] - 1, n - 1).astype(np.int64)
    npkt = first.size
    other = np.zeros(npkt, dtype=bool)
    if rows.codes is not None and rows.names is not None:
        own = np.zeros(256, dtype=bool)  # by reason code (a uint8): a lookup, not np.isin's sort
        own[[code for code, name in rows.names.items() if name and name != "PKT_BAD_FRAGMENT"]] = True
        other = np.bincount(of, weights=own[rows.codes], minlength=npkt) > 0
    return Packets(
        of,
        first,
        np.bincount(of, minlength=npkt).astype(np.int64),
        np.bincount(of, weights=rows.length, minlength=npkt).astype(np.int64),
        eop[last],
        other,
    )


def _packet_judge(rule: Callable[[Rows, Packets, I64, RuleBook], tuple[Mask, Callable[[int], str]]]) -> Predicate:
    """A packet-level predicate: rows ``i`` judged with their packets (a record without a slot cannot be)."""

    def judge(rows: Rows, i: I64, ref: Reference) -> Verdict:
        if rows.kind != "tx" or rows.slot is None or rows.cmd is None or rows.length is None:
            return np.zeros(i.size, dtype=bool), lambda _j: f"a {rows.kind} record naming no TX ring slot"
        if rows.rules is None:  # no rule book: the kernel claims no limit the oracle could judge against
            return np.ones(i.size, dtype=bool), lambda _j: ""
        return rule(rows, packets(rows), i, rows.rules)

    return judge


def _too_long(rows: Rows, p: Packets, i: I64, rules: RuleBook) -> tuple[Mask, Callable[[int], str]]:
    """PKT_TOO_LONG: the packet's fragments add up to more than the jumbo frame (RuleBook.max_frame)."""
    total = p.length[p.of[i]]
    return total > rules.max_frame, lambda j: f"its packet is {int(total[j])} bytes <= {rules.max_frame}"


def _too_many(rows: Rows, p: Packets, i: I64, rules: RuleBook) -> tuple[Mask, Callable[[int], str]]:
    """PKT_TOO_MANY_FRAGS: the packet has more fragments than AF_XDP multi-buffer allows (RuleBook.max_fragments)."""
    frags = p.fragments[p.of[i]]
    return frags > rules.max_fragments, lambda j: f"its packet has {int(frags[j])} fragments <= {rules.max_fragments}"


def _csum_offset(rows: Rows, p: Packets, i: I64, rules: RuleBook) -> tuple[Mask, Callable[[int], str]]:
    """CSUM_OFFSET: the record is its complete packet's first descriptor, which asks for the checksum (IC), and
    CSO + 2 or CSS lies past the packet's end (8254x 3.3.3.1: the checksum is inserted at CSO and computed from
    CSS over the packet, whose length is the sum of its fragments), and no rule that comes first in precedence
    (the descriptor's CMD_UNSUPPORTED, LEN_ZERO, LEN_TOO_LONG, ADDR_WRAP: docs/verifier.md) breaks the descriptor,
    so CSUM_OFFSET is its first reason, not only a true one."""
    assert rows.cmd is not None and rows.cso is not None and rows.css is not None and rows.length is not None
    pkt = p.of[i]
    total = p.length[pkt]
    head = p.first[pkt] == i
    ic = (rows.cmd[i] & np.uint8(TXD_CMD_IC)) != 0
    cso, css = rows.cso[i], rows.css[i]
    outside = (cso + 2 > total) | (css >= total)
    # the descriptor's own rules come first (docs/verifier.md, precedence): judged exactly from the descriptor
    first = np.full(i.size, -1, dtype=np.int64)
    own = descriptor_rules(rules, rows.length[i], rows.cmd[i])
    for k, (broken, _name) in reversed(list(enumerate(own))):
        first = np.where(broken, k, first)
    addr, span = _span(rows, i)
    first = np.where((first < 0) & _wraps(addr, span), len(own), first)
    outranked = ["ADDR_WRAP" if k == len(own) else own[k][1] for k in range(len(own) + 1)]
    ok = head & p.complete[pkt] & ic & outside & (first < 0)

    def fact(j: int) -> str:
        if not head[j]:
            return "it is not its packet's first descriptor"
        if not p.complete[pkt[j]]:
            return "its packet has no EOP yet"
        if not ic[j]:
            return "it does not ask for checksum insertion (IC)"
        if first[j] >= 0:
            return f"the descriptor breaks {outranked[int(first[j])]}, which comes before CSUM_OFFSET"
        return f"CSO {int(cso[j])} + 2 and CSS {int(css[j])} lie within its {int(total[j])}-byte packet"

    return ok, fact


def _bad_fragment(rows: Rows, p: Packets, i: I64, rules: RuleBook) -> tuple[Mask, Callable[[int], str]]:
    """PKT_BAD_FRAGMENT: another record of the packet names the fragment's own fault (judged on that record); a
    packet-level fault would have given the packet's reason to every fragment instead."""
    ok = p.other[p.of[i]]
    return ok, lambda j: f"no other record of its {int(p.fragments[p.of[i][j]])}-fragment packet names a fault"


PACKET_PREDICATES: Mapping[str, Predicate] = {
    "PKT_TOO_LONG": _packet_judge(_too_long),
    "PKT_TOO_MANY_FRAGS": _packet_judge(_too_many),
    "CSUM_OFFSET": _packet_judge(_csum_offset),
    "PKT_BAD_FRAGMENT": _packet_judge(_bad_fragment),
}


def _iommu_pages(rows: Rows, i: I64, ref: Reference) -> tuple[Mask, Mask, Mask]:
    """Per fault: (not mapped as one contiguous run, some page lacks the access, some page's unpin is under way)."""
    assert rows.addr is not None and rows.length is not None
    addr = rows.addr[i]
    span = np.maximum(rows.length[i], 1).astype(np.uint64) - np.uint64(1)
    wrap = addr > _TOP - span
    first = (addr >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    last = np.where(wrap, first, ((addr + span) >> np.uint64(PAGE_SHIFT)).astype(np.int64))
    if not ref.bus:
        return np.ones(i.size, dtype=bool), np.zeros(i.size, dtype=bool), np.zeros(i.size, dtype=bool)
    pages, entries = ref.bus_table
    width = int((last - first).max()) + 1
    if width == 1:  # the common case: every access inside one page
        grid, inside = first[:, None], np.ones((i.size, 1), dtype=bool)
    else:
        grid = first[:, None] + np.arange(width)[None, :]  # every page of every access (a few each)
        inside = grid <= last[:, None]
    at = np.minimum(np.searchsorted(pages, grid), pages.size - 1)
    found = (pages[at] == grid) & inside
    frame, access = entries[at, 0], entries[at, 1]
    contiguous = (frame - frame[:, :1]) == np.arange(width)[None, :]
    unmapped = wrap | (inside & ~(found & contiguous)).any(axis=1)
    denied = (found & ((access & _need(rows)) == 0)).any(axis=1)
    asked = (found & ((ref.table[np.minimum(frame, ref.table.size - 1)] & UNPIN_ASKED) != 0)).any(axis=1)
    return unmapped, denied, asked


def iommu_not_mapped(rows: Rows, i: I64, ref: Reference) -> Verdict:
    unmapped, _, asked = _iommu_pages(rows, i, ref)
    return unmapped | asked, lambda j: "every page is mapped, contiguously, for the device's owner"


def iommu_permission(rows: Rows, i: I64, ref: Reference) -> Verdict:
    unmapped, denied, asked = _iommu_pages(rows, i, ref)
    ok = (~unmapped & denied) | asked
    return ok, lambda j: "a page is not mapped" if unmapped[j] else f"every page allows access {_need(rows)}"


def _event(check: Callable[[Rows], tuple[bool, str]]) -> Predicate:
    """A predicate over one event record (its detail), as a one-row verdict."""

    def judge(rows: Rows, i: I64, ref: Reference) -> Verdict:
        ok, fact = check(rows)
        return np.full(i.size, ok), lambda _j: fact

    return judge


def _tail_fact(rows: Rows) -> tuple[int, int, int, int]:
    detail = rows.detail or {}
    size = rows.ring_size if rows.ring_size is not None else int(detail.get("size", -1))
    return int(detail.get("new_tail", -1)), int(detail.get("tail", -1)), int(detail.get("done", -1)), size


def _tail_beyond(rows: Rows) -> tuple[bool, str]:
    new, _, _, size = _tail_fact(rows)
    return not 0 <= new < size, f"tail {new} is a slot of the {size}-slot ring"


def _tail_moves(backwards: bool) -> Callable[[Rows], tuple[bool, str]]:
    def check(rows: Rows) -> tuple[bool, str]:
        new, tail, done, size = _tail_fact(rows)
        if not (0 <= new < size and 0 <= tail < size and 0 <= done < size):
            return False, f"tail {new} (from {tail}, done {done}) is not a move on a {size}-slot ring"
        forward = (new - tail) % size
        if forward <= indices.free(done, tail, size):
            return False, f"{forward} new slots fit in the {indices.free(done, tail, size)} free"
        return (size - forward < forward) == backwards, f"a move of {forward} slots on {size} is the other kind"

    return check


def _reg_offset(rows: Rows) -> int:
    return int(str((rows.detail or {}).get("offset", "-1")), 0)


def _not_doorbell(rows: Rows) -> tuple[bool, str]:
    offset = _reg_offset(rows)
    return offset not in rows.tails, f"{offset:#06x} is the tail of a queue the tenant owns"


def _not_owner(rows: Rows) -> tuple[bool, str]:
    offset = _reg_offset(rows)
    tail = offset >= 0 and re.fullmatch(r"[TR]DT\d*", regs.reg_name(offset)) is not None  # TDTn or RDTn
    owned = rows.tenant is not None and rows.tenant == rows.record_tenant
    return tail and not owned, f"{offset:#06x} is not a tail register, or the tenant owns {rows.nic}'s queues"


#: Reasons about one event (a register write, a tail move), judged on the record's detail, not on columns.
EVENT_PREDICATES: Mapping[str, Predicate] = {
    "RING_TAIL_BEYOND": _event(_tail_beyond),
    "RING_TAIL_BACKWARDS": _event(_tail_moves(backwards=True)),
    "RING_OVERRUN": _event(_tail_moves(backwards=False)),
    "REG_NOT_DOORBELL": _event(_not_doorbell),
    "REG_NOT_OWNER": _event(_not_owner),
}

PREDICATES: Mapping[str, Predicate] = {
    "ADDR_NOT_PINNED": not_pinned,
    "PIN_RELEASED": pin_released,
    "ACCESS_NO_READ": access_missing("tx"),
    "ACCESS_NO_WRITE": access_missing("rx"),
    "ADDR_WRAP": addr_wrap,
    "ADDR_BEYOND_MEMORY": beyond_memory,
    "LEN_ZERO": len_zero,
    "LEN_TOO_LONG": len_too_long,
    "CMD_UNSUPPORTED": cmd_unsupported,
    "IOMMU_NOT_MAPPED": iommu_not_mapped,
    "IOMMU_PERMISSION": iommu_permission,
    **PACKET_PREDICATES,
    **EVENT_PREDICATES,
}

#: What each predicate needs of a record: descriptor columns, IOMMU columns, or an event's detail.
_NEEDS_RANGE = {"ADDR_NOT_PINNED", "PIN_RELEASED", "ACCESS_NO_READ", "ACCESS_NO_WRITE", "ADDR_WRAP",
                "ADDR_BEYOND_MEMORY", "LEN_ZERO", "LEN_TOO_LONG", "IOMMU_NOT_MAPPED", "IOMMU_PERMISSION"}  # fmt: skip


#: Reasons judged without the pin reference: what a file-backed log is judged on at the end of a campaign,
#: when the reference of each record's moment is gone.
WITHOUT_PINS = frozenset(PREDICATES) - {
    "ADDR_NOT_PINNED",
    "PIN_RELEASED",
    "ACCESS_NO_READ",
    "ACCESS_NO_WRITE",
    "IOMMU_NOT_MAPPED",
    "IOMMU_PERMISSION",
    # a packet's records are judged together, and the end-of-campaign tally keeps only the records it judges: these
    # are judged per step (in memory, or as a file-backed log is followed), where every record of a packet is there
    *PACKET_PREDICATES,
}


def judge(
    rows: Rows,
    names: Mapping[int, str],
    codes: npt.NDArray[np.uint8],
    ref: Reference,
    limit: int = 4,
    only: frozenset[str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """One line per record whose reason is not true (at most ``limit``): its seq, reason and the contradicting fact.

    ``only``: judge just these reason names (the others pass unjudged); ``skip``: not these.
    """
    problems: list[str] = []
    if rows.codes is None:
        rows = dataclasses.replace(rows, codes=codes, names=names)  # packet-level reasons read their siblings
    for code in np.bincount(codes, minlength=1).nonzero()[0].tolist():  # the codes present, in order
        name = names.get(code, "")
        if name in NOT_JUDGED or name in skip or (only is not None and name not in only):
            continue
        if not name:  # blank: AuditWatch's finding
            continue
        i = (codes == code).nonzero()[0]
        predicate = PREDICATES.get(name)
        if predicate is None:
            problems.append(f"record {rows.seq + int(i[0])}: reason {name!r} is not a reason the oracle knows")
            continue
        if name in _NEEDS_RANGE and (rows.addr is None or rows.length is None):
            problems.append(f"record {rows.seq + int(i[0])}: {name} on a record without an address and length")
            continue
        ok, fact = predicate(rows, i, ref)
        for j in (~ok).nonzero()[0][: max(0, limit - len(problems))].tolist():
            problems.append(f"record {rows.seq + int(i[j])} says {name}, but {fact(j)}")
        if len(problems) >= limit:
            break
    return problems

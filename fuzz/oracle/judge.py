"""The independent oracle: judges what the device actually did, from ground truth alone.

It never imports the verifier: an oracle that shares code with what it
judges cannot see that code's bugs.  It knows only what the hardware and the
memory controller know: every DMA batch (through the DMA engine's observer
hook, invariant 1), the true owner of every frame (``PhysicalMemory.owner``),
the kernel's secret canaries, and the frames on every wire.

An *escape* is any of:
* a data DMA (``tx-data``/``rx-data``) that touched a frame not owned by the
  tenant that owns the queue;
* a descriptor DMA that touched the kernel's secret region or another tenant's frame;
* a kernel canary, or a registered secret, inside a frame on a wire;
* a watched region (kernel memory, another tenant's buffer) whose bytes changed;
* (when a pin reference is kept for the queue's owner, ``grant``/``revoke``) a data
  DMA into a frame of the owner's own that the owner never pinned with that access
  (TX reads need device-read, RX writes device-write): kind ``"pin"``.

The pin reference is the fuzzer's own account of the pins it asked for, kept
as one access byte per frame: it is deliberately not the kernel's pin table,
so a bug in the kernel's bookkeeping shows up as a difference.

Two further checks judge the machine's answers rather than its accesses:
liveness (fuzz/oracle/liveness.py ``bounded_step``: bounded device work per
step, no hang, no exception) and audit completeness (fuzz/oracle/audit.py
``AuditWatch``: every refusal mallory sees in her own ring has exactly one
audit record with a true reason, counters equal records, a file-backed log's
chain verifies; the log's verifier is passed in).  Each tail write of the
queue's owner is judged too (``tail_written``): the ring rules at their edges
(fuzz/oracle/geometry.py), held packets (fuzz/oracle/held.py) and the race
windows a doorbell may open (fuzz/oracle/races.py).

``on_dma`` is vectorised over a batch (the fuzzer's throughput depends on it):
only the accesses found bad are turned into ``Escape`` records one by one.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from fuzz.oracle.audit import atomic_window, marked_in
from fuzz.oracle.escape import Escape
from fuzz.oracle.geometry import RingModel, judge_tail_write
from fuzz.oracle.held import UNTERMINATED, HeldModel, judge_doorbell
from fuzz.oracle.liveness import Work
from fuzz.oracle.races import RaceWrite, judge_race
from fuzz.oracle.reasons import (
    ACCESS_BITS,
    RELEASED,
    UNPIN_ASKED,
    Reference,
)
from fuzz.oracle.rules import OpenPacket, RuleBook, descriptor_rules, packet_rules
from fuzz.oracle.syscalls import SyscallJudge
from ring import indices
from ring.descriptors import DESC_SIZE, RX_DESC, TX_DESC
from ring.frames import FrameBatch
from ring.memory import CANARY_SIZE, CANARY_TAG, OWNER_KERNEL, PAGE_SHIFT, PhysicalMemory, owner_name

if TYPE_CHECKING:
    from fuzz.oracle.audit import AuditWatch


Mask = npt.NDArray[np.bool_]


class DmaBatchLike(Protocol):
    """The fields of device.dma.DmaBatch the oracle reads (duck-typed: no import of the judged code)."""

    @property
    def device(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def lengths(self) -> npt.NDArray[np.int64]: ...
    @property
    def phys(self) -> npt.NDArray[np.uint64]: ...
    @property
    def allowed(self) -> npt.NDArray[np.bool_]: ...

    # ``queue`` (the device queue) is read where present: open packets are carried per (device, queue)


@dataclass
class Oracle:
    memory: PhysicalMemory
    queue_owner: dict[str, int]  # NIC name -> tenant id that owns its queues
    secrets: dict[bytes, str] = field(default_factory=dict)  # marker -> whose secret
    names: dict[int, str] = field(default_factory=dict)  # tenant id -> name, for reports
    escapes: list[Escape] = field(default_factory=list)
    #: watched regions for ``check_integrity``: name -> (phys, the bytes as they were; read-only)
    _watched: dict[str, tuple[int, npt.NDArray[np.uint8]]] = field(default_factory=dict)
    accesses: int = 0

    #: tenant id -> access bits (1 device read, 2 device write) per frame, from ``grant``/``revoke``
    pinned: dict[int, npt.NDArray[np.uint8]] = field(default_factory=dict)
    #: frames written by allowed DMA since the last ``check_written`` (first, last) pairs
    _dirty: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = field(default_factory=list)
    #: guarded regions for ``check_written``: name -> (phys, copy of the bytes; read-only, replaced when they change)
    _guarded: dict[str, tuple[int, npt.NDArray[np.uint8]]] = field(default_factory=dict)
    #: at most this many ``Escape`` records per DMA batch or wire burst (None: all); the rest are only counted
    detail_limit: int | None = None
    #: escapes counted but not recorded because of ``detail_limit``
    suppressed: int = 0
    #: liveness: work the devices did since ``begin_step`` (DMA batches, bytes, the largest descriptor fetch)
    work: Work = field(default_factory=lambda: Work())
    #: audit completeness, checked after each ``bounded_step`` when set (``AuditWatch.watch``)
    audit: AuditWatch | None = None

    #: tenant -> device page -> (frame, access): where the tenant's pins sit in device addresses
    #: (bus = physical, except in ``iommu`` mode where a tenant maps IOVA = its virtual address)
    bus_pins: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    #: the audit record count, when an ``AuditWatch`` judges reasons: changes to the pin reference are then
    #: remembered with it (``_history``), so each record is judged against the reference of its moment
    clock: Callable[[], int] | None = None
    #: (audit count, tenant, pin table, bus pages, frame owners) as they were before a change at that count
    _history: list[tuple[int, int, npt.NDArray[np.uint8], dict[int, tuple[int, int]], npt.NDArray[np.int32]]] = field(
        default_factory=list
    )
    _current: dict[int | None, Reference] = field(default_factory=dict)

    #: accepted => every rule holds (fuzz/oracle/rules.py): set where a kernel claims to enforce the rules
    #: (``verifier`` mode); every descriptor the device fetches is judged against them (kind ``"rule"``)
    rules: RuleBook | None = None
    #: device name -> the receive buffer size it is programmed with (its RCTL.BSIZE): what it may write
    rx_buffer: Callable[[str], int] | None = None
    #: the packet each device queue has fetched fragments of without its EOP yet
    _open: dict[tuple[str, int], OpenPacket] = field(default_factory=dict)
    #: the oracle's account of each RX queue's tail and in-flight slots (ring geometry)
    _rings: dict[tuple[str, str, int], RingModel] = field(default_factory=dict)
    #: the oracle's account of the packet each TX queue holds open across doorbells (fuzz/oracle/held.py)
    _held: dict[tuple[str, int], HeldModel] = field(default_factory=dict)
    #: the kernel's answers to pin, unpin and free, judged against the pin reference (kind ``"syscall"``)
    syscalls: SyscallJudge = field(default_factory=SyscallJudge)

    # -- the pin reference -------------------------------------------------------------
    def grant(self, tenant: int, phys: int, length: int, access: int, bus: int | None = None) -> None:
        """The fuzzer pinned ``[phys, phys + length)`` for ``tenant`` with ``access`` (1 read, 2 write).

        ``bus``: the device address of ``phys`` (default: the same).
        """
        table = self._before_change(tenant)
        part = slice(phys >> PAGE_SHIFT, ((phys + length - 1) >> PAGE_SHIFT) + 1)
        table[part] = (table[part] & np.uint8(ACCESS_BITS)) | np.uint8(access)
        pages = self.bus_pins.setdefault(tenant, {})
        first = (phys if bus is None else bus) >> PAGE_SHIFT
        for k, frame in enumerate(range(part.start, part.stop)):
            pages[first + k] = (frame, int(table[frame]) & ACCESS_BITS)

    def revoke(self, tenant: int, phys: int, length: int, bus: int | None = None) -> None:
        """The fuzzer released a pin: the device may no longer touch those frames for ``tenant``."""
        if tenant not in self.pinned:
            return
        table = self._before_change(tenant)
        part = slice(phys >> PAGE_SHIFT, ((phys + length - 1) >> PAGE_SHIFT) + 1)
        table[part] = np.uint8(RELEASED)
        pages = self.bus_pins.get(tenant, {})
        first = (phys if bus is None else bus) >> PAGE_SHIFT
        for k in range(part.stop - part.start):
            pages.pop(first + k, None)

    def release_pending(self, tenant: int, phys: int, length: int) -> None:
        """The owner asked to unpin while DMA is in flight: the kernel lets go once the device is done.

        For DMA the frames still count as pinned (the in-flight work may
        finish); a refusal may call them pinned or released, both true.
        """
        if tenant in self.pinned:
            table = self._before_change(tenant)
            table[phys >> PAGE_SHIFT : ((phys + length - 1) >> PAGE_SHIFT) + 1] |= np.uint8(UNPIN_ASKED)

    def _before_change(self, tenant: int) -> npt.NDArray[np.uint8]:
        """``tenant``'s table, about to change: its state so far goes to ``_history`` when reasons are judged."""
        table = self.pinned.setdefault(tenant, np.zeros(self.memory.frames, dtype=np.uint8))
        self._current.pop(tenant, None)
        if self.clock is not None:
            pages = dict(self.bus_pins.get(tenant, {}))
            self._history.append((self.clock(), tenant, table.copy(), pages, self.memory.owner.copy()))
        return table

    def owners_changing(self) -> None:
        """Frames are about to change owner (an allocation or a free): the records so far name the owners as they
        are now, so they are remembered with every pin reference (a record's ``owner`` is judged at its moment)."""
        if self.clock is not None:
            for tenant in list(self.pinned):
                self._before_change(tenant)

    def references(self, tenant: int | None, first: int, stop: int) -> list[tuple[int, int, Reference]]:
        """The pin reference of ``tenant`` for records ``first..stop-1``: ``(lo, hi, reference)`` runs.

        A record made when the audit count was ``s`` saw the state before
        the first change remembered at a count above ``s`` (the current state if none).
        """
        current = self._current.get(tenant)
        if current is None:  # kept until the tenant's pins change: its look-up tables are built once
            empty = np.zeros(self.memory.frames, dtype=np.uint8)
            current = self._current[tenant] = Reference(
                self.pinned.get(tenant, empty) if tenant is not None else empty,
                dict(self.bus_pins.get(tenant, {})) if tenant is not None else {},
                self.memory.size,
                self.memory.owner,
            )
        runs, lo = [], first
        for count, whose, table, pages, owner in self._history:
            if whose != tenant or count <= lo:
                continue
            hi = min(count, stop)
            runs.append((lo, hi, Reference(table, pages, self.memory.size, owner)))
            lo = hi
            if lo >= stop:
                break
        if lo < stop:
            runs.append((lo, stop, current))
        return runs

    def forget_history(self) -> None:
        """The records up to now are judged: the reference's past is no longer needed."""
        self._history.clear()

    # -- DMA -------------------------------------------------------------------------
    def _bad(self, frames: npt.NDArray[np.int64], owner: int | None, data: bool, need: int) -> npt.NDArray[np.bool_]:
        """Which of ``frames`` the access may not touch (vectorised)."""
        owners = self.memory.owner[frames]
        if data:
            bad = owners != (owner if owner is not None else -99)
            table = self.pinned.get(owner) if owner is not None else None
            if table is not None:
                bad = bad | ((table[frames] & np.uint8(need)) == 0)
            return bad
        # descriptor rings: the owner's own, or kernel frames outside the secret region (shadow rings)
        secret = frames < self.memory.kernel_frames.count
        return ~((owners == owner) | ((owners == OWNER_KERNEL) & ~secret))

    def on_dma(self, batch: DmaBatchLike) -> None:
        """Observer hook for DmaEngine.observers: check every allowed access against ground truth."""
        self.accesses += int(batch.allowed.size)
        self.work.count(batch)
        if self.rules is not None and batch.direction == "read" and batch.purpose.endswith("-desc"):
            self._judge_fetch(batch)
        live = batch.allowed & (batch.lengths > 0)
        if not bool(live.any()):
            return
        which = live.nonzero()[0]
        start = batch.phys[which].astype(np.int64)  # allowed: inside memory, so no wrap
        last = (start + batch.lengths[which] - 1) >> PAGE_SHIFT
        first = start >> PAGE_SHIFT
        if batch.direction == "write":
            self._dirty.append((first, last))
        owner = self.queue_owner.get(batch.device)
        data = batch.purpose.endswith("-data")
        need = 2 if batch.direction == "write" else 1
        bad = self._bad(first, owner, data, need) | self._bad(last, owner, data, need)
        for i in (~bad & (last - first > 1)).nonzero()[0].tolist():  # long accesses: the frames in between
            bad[i] = bool(self._bad(np.arange(first[i] + 1, last[i]), owner, data, need).any())
        culprits = bad.nonzero()[0]
        if self.detail_limit is not None and culprits.size > self.detail_limit:
            self.suppressed += int(culprits.size) - self.detail_limit
            culprits = culprits[: self.detail_limit]
        for i in culprits.tolist():
            self._report(batch, owner, data, need, int(start[i]), int(batch.lengths[which[i]]))

    def _report(self, batch: DmaBatchLike, owner: int | None, data: bool, need: int, start: int, length: int) -> None:
        frames = np.arange(start >> PAGE_SHIFT, ((start + length - 1) >> PAGE_SHIFT) + 1)
        bad = self._bad(frames, owner, data, need)
        frame = int(frames[np.argmax(bad)])
        code = int(self.memory.owner[frame])
        who = self.names.get(code, owner_name(code))
        if data and owner is not None and code == owner:
            access = "device write" if need == 2 else "device read"
            kind, what = "pin", f"frame {frame} of {who}'s own, never pinned for {access}"
        else:
            kind, what = "dma", f"frame {frame} owned by {who}"
        self.escapes.append(
            Escape(
                kind,
                f"{batch.device} {batch.purpose} {batch.direction} of {length} bytes at {start:#x} touched {what}",
                batch.device,
                start,
                length,
                who,
            )
        )

    # -- accepted => every rule holds ------------------------------------------------------
    def _judge_fetch(self, batch: DmaBatchLike) -> None:
        """The descriptors a device fetches, read from memory as it reads them, judged against the rules."""
        live = batch.allowed & (batch.lengths > 0)
        if not bool(live.any()):
            return
        which = live.nonzero()[0]
        data = self.memory.data
        parts = [
            data[s : s + n] for s, n in zip(batch.phys[which].tolist(), batch.lengths[which].tolist(), strict=True)
        ]
        raw = parts[0] if len(parts) == 1 else np.concatenate(parts)
        count = raw.size // DESC_SIZE
        if not count:
            return
        owner = self.queue_owner.get(batch.device)
        queue = int(getattr(batch, "queue", 0))
        if batch.purpose.startswith("tx"):
            self._judge_tx(batch.device, queue, owner, raw[: count * DESC_SIZE].view(TX_DESC))
        else:
            self._judge_rx(batch.device, owner, raw[: count * DESC_SIZE].view(RX_DESC))

    def _range_bad(
        self, addr: npt.NDArray[np.uint64], length: npt.NDArray[np.int64], owner: int | None, need: int
    ) -> tuple[Mask, Mask, Mask]:
        """Per range ``[addr, addr + length)`` (length > 0): (wraps 2**64, ends past memory, a frame not pinned by
        ``owner`` with ``need`` or not owned by it), vectorised as ``on_dma``."""
        addr = addr.astype(np.uint64, copy=False)
        span = length.astype(np.uint64) - np.uint64(1)
        wrap = addr > np.uint64(0xFFFF_FFFF_FFFF_FFFF) - span
        size = np.uint64(self.memory.size)
        beyond = ~wrap & ((addr >= size) | (addr + span >= size))
        inside = ~wrap & ~beyond
        first = np.where(inside, addr >> np.uint64(PAGE_SHIFT), 0).astype(np.int64)
        last = np.where(inside, (addr + span) >> np.uint64(PAGE_SHIFT), 0).astype(np.int64)
        pin = inside & (self._bad(first, owner, True, need) | self._bad(last, owner, True, need))
        for i in (inside & ~pin & (last - first > 1)).nonzero()[0].tolist():
            pin[i] = bool(self._bad(np.arange(first[i] + 1, last[i]), owner, True, need).any())
        return wrap, beyond, pin

    def outside_pins(self, owner: int | None, addr: int, length: int, need: int) -> bool:
        """Whether one range (length > 0) wraps, leaves memory or touches a frame ``owner`` has not pinned with
        ``need`` (the pin reference): the virtqueue judge's question for each buffer and indirect table."""
        wrap, beyond, pin = self._range_bad(
            np.array([addr], dtype=np.uint64), np.array([length], dtype=np.int64), owner, need
        )
        return bool(wrap[0] or beyond[0] or pin[0])

    def _pin_reason(self, addr: int, length: int, owner: int | None, need: int) -> str:
        """The reason a refusal of this range would name (the first bad frame's state in the pin reference)."""
        frames = np.arange(addr >> PAGE_SHIFT, ((addr + length - 1) >> PAGE_SHIFT) + 1)
        frame = int(frames[np.argmax(self._bad(frames, owner, True, need))])
        table = self.pinned.get(owner) if owner is not None else None
        bits = 0 if table is None else int(table[frame])
        if self.memory.owner[frame] == (owner if owner is not None else -99):
            if bits & ACCESS_BITS:
                return ("ACCESS_NO_WRITE" if need == 2 else "ACCESS_NO_READ") + f" (frame {frame})"
            if bits & RELEASED:
                return f"PIN_RELEASED (frame {frame})"
        code = int(self.memory.owner[frame])
        return f"ADDR_NOT_PINNED (frame {frame}, owned by {self.names.get(code, owner_name(code))})"

    def _rule(self, device: str, what: str, rule: str, addr: int = -1, length: int = 0) -> None:
        self.escapes.append(Escape("rule", f"{device} was given {what}, which breaks {rule}", device, addr, length))

    def _judge_tx(self, device: str, queue: int, owner: int | None, descs: npt.NDArray[np.void]) -> None:
        rules = self.rules
        assert rules is not None
        addr, length, cmd = descs["addr"], descs["length"].astype(np.int64), descs["cmd"]
        found = 0
        limit = self.detail_limit
        broken = np.full(descs.size, -1, dtype=np.int64)
        checks = descriptor_rules(rules, length, cmd)
        for k, (mask, _name) in enumerate(checks):
            broken = np.where((broken < 0) & mask, k, broken)
        judged = (broken < 0) & (length > 0)
        wrap, beyond, pin = self._range_bad(addr, np.maximum(length, 1), owner, 1)
        bad_range = judged & (wrap | beyond | pin)
        for i in ((broken >= 0) | bad_range).nonzero()[0].tolist():
            a, n, c = int(addr[i]), int(length[i]), int(cmd[i])
            if broken[i] >= 0:
                name = checks[int(broken[i])][1]
                fact = {"CMD_UNSUPPORTED": f"cmd {c:#04x} beyond {rules.cmd_supported:#04x}", "LEN_ZERO": "0 bytes",
                        "LEN_TOO_LONG": f"{n} bytes > {rules.max_buffer}"}[name]  # fmt: skip
            elif wrap[i]:
                name, fact = "ADDR_WRAP", f"{a:#x} + {n} wraps 2**64"
            elif beyond[i]:
                name, fact = "ADDR_BEYOND_MEMORY", f"ends past {self.memory.size:#x}"
            else:
                name, fact = self._pin_reason(a, n, owner, 1), "not pinned for device read by the queue's owner"
            if limit is not None and found >= limit:
                self.suppressed += 1
                continue
            found += 1
            self._rule(device, f"TX descriptor addr={a:#x} len={n} cmd={c:#04x} ({fact})", name, a, n)
        key = (device, queue)
        carry = self._open.get(key, OpenPacket())
        cso, css = descs["cso"].astype(np.int64), descs["css"].astype(np.int64)
        packets, self._open[key] = packet_rules(rules, carry, length, cmd, cso, css)
        for lo, hi, name, fact in packets:
            if limit is not None and found >= limit:
                self.suppressed += 1
                continue
            found += 1
            at = max(lo, 0)
            where = f"fetched descriptors {lo}..{hi}" if lo >= 0 else f"a packet continued to descriptor {hi}"
            self._rule(device, f"a packet ({where}: {fact})", name, int(addr[at]), int(length[at : hi + 1].sum()))

    def _judge_rx(self, device: str, owner: int | None, descs: npt.NDArray[np.void]) -> None:
        """RX: the whole receive buffer the device may write (its RCTL.BSIZE), not what the descriptor says."""
        size = self.rx_buffer(device) if self.rx_buffer is not None else 2048
        addr = descs["addr"]
        length = np.full(descs.size, size, dtype=np.int64)
        wrap, beyond, pin = self._range_bad(addr, length, owner, 2)
        bad = (wrap | beyond | pin).nonzero()[0]
        limit = self.detail_limit
        if limit is not None and bad.size > limit:
            self.suppressed += int(bad.size) - limit
            bad = bad[:limit]
        for i in bad.tolist():
            a = int(addr[i])
            if wrap[i]:
                name = "ADDR_WRAP"
            elif beyond[i]:
                name = "ADDR_BEYOND_MEMORY"
            else:
                name = self._pin_reason(a, size, owner, 2)
            self._rule(device, f"RX buffer addr={a:#x} (the device may write {size} bytes there)", name, a, size)

    # -- ring geometry at its edges ---------------------------------------------------------
    def tail_written(
        self,
        nic: str,
        kind: str,
        queue: int,
        value: int,
        size: int,
        write: Callable[[], None],
        device: Callable[[], tuple[int, int]],
        ring: npt.NDArray[np.void] | None = None,
        race: RaceWrite | None = None,
    ) -> None:
        """The queue's owner writes ``value`` to its ``kind`` tail of a ``size``-slot ring (``write`` does it).

        With the rules on, the write must be refused where the ring rules demand it (fuzz/oracle/geometry.py):
        the device's (head, tail) registers (``device``) show its tail unmoved, and one RING_* record is added;
        ``ring``: the tenant's ring, for the oracle's account of what is in flight (RX) and of what one doorbell
        consumed (TX: a packet of it may not have a slot refused and a slot sent, in any order); ``race``: a race
        write this doorbell is to carry, judged against what the doorbell brought (fuzz/oracle/races.py).
        """
        if self.rules is None:
            write()
            return
        model = self._rings.setdefault((nic, kind, queue), RingModel(size)) if ring is not None else None
        tail = None if model is None else model.tail
        # a driver reaps the refusals it was shown before it hands those slots back: the audit watch judges what
        # this attack refused so far, so a slot refused, handed back and refused again is two refusals
        if (
            self.audit is not None
            and ring is not None
            and tail is not None
            and 0 <= value < size
            and marked_in(kind, ring, tail, indices.used(tail, value, size), size)
        ):
            self.escapes += self.audit.after_step()
        # the queue's audit counts, read once before the write and once after it (nothing else records between)
        counted: list[dict[str, int] | None] = []
        before: list[dict[str, int] | None] = []

        def refusals() -> dict[str, int] | None:
            if not counted:
                counted.append(self._refusal_counts(nic, kind, queue))
            return counted[0]

        def counted_write(write: Callable[[], None] = write) -> None:
            before.append(refusals())
            write()
            counted.clear()

        held_before = self._held.get((nic, queue)) if kind == "tx" else None
        held_open = held_before is not None and held_before.start >= 0  # before this doorbell
        for reason, what in judge_tail_write(nic, kind, value, size, model, counted_write, device, refusals, ring):
            self.escapes.append(Escape("ring", f"{what}, which breaks {reason}", nic))
        if race is not None and model is not None and tail is not None:
            self.escapes += judge_race(race, nic, kind, model.tail != tail, held_open)
        if kind == "tx" and ring is not None and model is not None and tail is not None and model.tail != tail:
            now = refusals()
            before_ = before[0] if before else None
            added = -1 if before_ is None or now is None else now.get(UNTERMINATED, 0) - before_.get(UNTERMINATED, 0)
            held = self._held.setdefault((nic, queue), HeldModel())
            for what in judge_doorbell(held, ring, tail, model.tail, size, self.rules, added):
                self.escapes.append(Escape("rule", f"{nic} tx queue {queue}: {what}", nic))
            split = atomic_window(ring, tail, indices.used(tail, model.tail, size), size)
            if split is not None:
                self.escapes.append(
                    Escape(
                        "rule",
                        f"{nic} tx queue {queue}: one doorbell's packet at slots {split} has slots refused and "
                        "slots sent, which breaks PKT_BAD_FRAGMENT (a packet goes whole or not at all)",
                        nic,
                    )
                )

    def _refusal_counts(self, nic: str, kind: str, queue: int) -> dict[str, int] | None:
        if self.audit is None:
            return None
        return dict(self.audit.sink.statistics(nic, queue, kind))

    # -- the wire ----------------------------------------------------------------------
    def on_wire(self, source: str, frames: FrameBatch, _stamps: npt.NDArray[np.int64]) -> None:
        """Cable tap: any kernel canary or registered secret in a frame is a leak (one search over the burst)."""
        if len(frames) == 0:
            return
        data = frames.data.tobytes()
        ends = np.cumsum(frames.lengths).tolist()
        canaries = self.memory.canaries
        leaks = [
            (frame, "kernel")
            for frame in _frames_with(data, ends, CANARY_TAG, lambda at: data[at : at + CANARY_SIZE] in canaries)
        ]
        for marker, whose in self.secrets.items():
            leaks += [(frame, whose) for frame in _frames_with(data, ends, marker, lambda _at: True)]
        if self.detail_limit is not None and len(leaks) > self.detail_limit:
            self.suppressed += len(leaks) - self.detail_limit
            leaks = leaks[: self.detail_limit]
        for frame, whose in leaks:
            raw = data[(ends[frame - 1] if frame else 0) : ends[frame]]
            what = f"kernel canary sent by {source}" if whose == "kernel" else f"{whose}'s secret sent by {source}"
            self.escapes.append(Escape("leak", what, source, evidence=raw))

    # -- integrity ---------------------------------------------------------------------
    def watch(self, name: str, phys: int, length: int) -> None:
        """Remember a region's bytes; ``check_integrity`` reports it if any of them changed."""
        self._watched[name] = (phys, _frozen_copy(self.memory.data[phys : phys + length]))

    def check_integrity(self) -> None:
        """Every watched region compared whole with its copy (the backstop for writes that bypass the DMA engine)."""
        for name, (phys, copy) in self._watched.items():
            now = self.memory.data[phys : phys + copy.size]
            if not _same(now, copy):
                self.escapes.append(Escape("integrity", f"{name} was overwritten", address=phys, length=copy.size))
                self._watched[name] = (phys, _frozen_copy(now))

    def guard(self, name: str, phys: int, length: int) -> None:
        """Keep a copy of a region; ``check_written`` compares only the frames DMA wrote since the last call."""
        self._guarded[name] = (phys, _frozen_copy(self.memory.data[phys : phys + length]))

    def check_written(self) -> None:
        """Integrity at batch speed: compare the guarded bytes of every frame the device wrote, then forget them.

        ``check_integrity`` (a whole comparison of each watched region) stays
        the backstop for writes that would bypass the DMA engine.
        """
        if not self._dirty:
            return
        firsts = np.concatenate([f for f, _ in self._dirty])
        lasts = np.concatenate([last for _, last in self._dirty])
        self._dirty.clear()
        for name, (phys, copy) in self._guarded.items():
            lo, hi = phys >> PAGE_SHIFT, (phys + copy.size - 1) >> PAGE_SHIFT
            hit = (firsts <= hi) & (lasts >= lo)
            if not bool(hit.any()):
                continue
            now = self.memory.data[phys : phys + copy.size]
            changed = (now != copy).nonzero()[0]
            if changed.size:
                at = phys + int(changed[0])
                self.escapes.append(
                    Escape("integrity", f"{name} was overwritten at {at:#x}", address=at, length=int(changed.size))
                )
                self._guarded[name] = (phys, _frozen_copy(now))


def _frozen_copy(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A read-only copy: a value, never changed in place (a machine reset, world/reset.py, need not restore it)."""
    copy = data.copy()
    copy.flags.writeable = False
    return copy


def _same(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> bool:
    """Byte-equal, compared as 64-bit words where the length allows (8x fewer elements than bytes)."""
    if a.size % 8 == 0:
        return bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))
    return bool(np.array_equal(a, b))


def _frames_with(data: bytes, ends: list[int], needle: bytes, confirm: Callable[[int], bool]) -> list[int]:
    """Frames (by index; ``ends`` are their cumulative ends) holding ``needle`` whole, where ``confirm`` agrees."""
    found = []
    at = data.find(needle)
    while at >= 0:
        frame = bisect.bisect_right(ends, at)
        end = ends[frame]
        if at + len(needle) <= end and confirm(at):
            found.append(frame)
            at = data.find(needle, end)  # one report per frame: go on with the next frame
        else:
            at = data.find(needle, at + 1)
    return found

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

``on_dma`` is vectorised over a batch (the fuzzer's throughput depends on it):
only the accesses found bad are turned into ``Escape`` records one by one.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ring.frames import FrameBatch
from ring.memory import CANARY_SIZE, CANARY_TAG, OWNER_KERNEL, PAGE_SHIFT, PhysicalMemory, owner_name


class DmaBatchLike(Protocol):
    """The fields of driver.dma.DmaBatch the oracle reads (duck-typed: no import of the judged code)."""

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


@dataclass(frozen=True)
class Escape:
    kind: str  # "dma", "pin", "leak", "integrity"
    what: str  # a one-line account
    device: str = ""
    address: int = -1
    length: int = 0
    owner: str = ""
    evidence: bytes = b""


@dataclass
class Oracle:
    memory: PhysicalMemory
    queue_owner: dict[str, int]  # NIC name -> tenant id that owns its queues
    secrets: dict[bytes, str] = field(default_factory=dict)  # marker -> whose secret
    names: dict[int, str] = field(default_factory=dict)  # tenant id -> name, for reports
    escapes: list[Escape] = field(default_factory=list)
    _watched: dict[str, tuple[int, int, bytes]] = field(default_factory=dict)
    accesses: int = 0

    #: tenant id -> access bits (1 device read, 2 device write) per frame, from ``grant``/``revoke``
    pinned: dict[int, npt.NDArray[np.uint8]] = field(default_factory=dict)
    #: frames written by allowed DMA since the last ``check_written`` (first, last) pairs
    _dirty: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = field(default_factory=list)
    #: guarded regions for ``check_written``: name -> (phys, copy of the bytes)
    _guarded: dict[str, tuple[int, npt.NDArray[np.uint8]]] = field(default_factory=dict)
    #: at most this many ``Escape`` records per DMA batch or wire burst (None: all); the rest are only counted
    detail_limit: int | None = None
    #: escapes counted but not recorded because of ``detail_limit``
    suppressed: int = 0

    # -- the pin reference -------------------------------------------------------------
    def grant(self, tenant: int, phys: int, length: int, access: int) -> None:
        """The fuzzer pinned ``[phys, phys + length)`` for ``tenant`` with ``access`` (1 read, 2 write)."""
        table = self.pinned.setdefault(tenant, np.zeros(self.memory.frames, dtype=np.uint8))
        table[phys >> PAGE_SHIFT : ((phys + length - 1) >> PAGE_SHIFT) + 1] |= np.uint8(access)

    def revoke(self, tenant: int, phys: int, length: int) -> None:
        """The fuzzer released a pin: the device may no longer touch those frames for ``tenant``."""
        table = self.pinned.get(tenant)
        if table is not None:
            table[phys >> PAGE_SHIFT : ((phys + length - 1) >> PAGE_SHIFT) + 1] = 0

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
        live = batch.allowed & (batch.lengths > 0)
        if not bool(live.any()):
            return
        which = np.flatnonzero(live)
        start = batch.phys[which].astype(np.int64)  # allowed: inside memory, so no wrap
        last = (start + batch.lengths[which] - 1) >> PAGE_SHIFT
        first = start >> PAGE_SHIFT
        if batch.direction == "write":
            self._dirty.append((first, last))
        owner = self.queue_owner.get(batch.device)
        data = batch.purpose.endswith("-data")
        need = 2 if batch.direction == "write" else 1
        bad = self._bad(first, owner, data, need) | self._bad(last, owner, data, need)
        for i in np.flatnonzero(~bad & (last - first > 1)).tolist():  # long accesses: the frames in between
            bad[i] = bool(self._bad(np.arange(first[i] + 1, last[i]), owner, data, need).any())
        culprits = np.flatnonzero(bad)
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
        """Remember a region's hash; ``check_integrity`` reports it if it changed."""
        self._watched[name] = (phys, length, self._digest(phys, length))

    def check_integrity(self) -> None:
        for name, (phys, length, digest) in self._watched.items():
            if self._digest(phys, length) != digest:
                self.escapes.append(Escape("integrity", f"{name} was overwritten", address=phys, length=length))
                self._watched[name] = (phys, length, self._digest(phys, length))

    def guard(self, name: str, phys: int, length: int) -> None:
        """Keep a copy of a region; ``check_written`` compares only the frames DMA wrote since the last call."""
        self._guarded[name] = (phys, self.memory.data[phys : phys + length].copy())

    def check_written(self) -> None:
        """Integrity at batch speed: compare the guarded bytes of every frame the device wrote, then forget them.

        ``check_integrity`` (a full hash of each watched region) stays the
        backstop for writes that would bypass the DMA engine.
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
            changed = np.flatnonzero(now != copy)
            if changed.size:
                at = phys + int(changed[0])
                self.escapes.append(
                    Escape("integrity", f"{name} was overwritten at {at:#x}", address=at, length=int(changed.size))
                )
                copy[:] = now

    def _digest(self, phys: int, length: int) -> bytes:
        return hashlib.sha256(self.memory.data[phys : phys + length].tobytes()).digest()


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

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
* a watched region (kernel memory, another tenant's buffer) whose bytes changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ring.frames import FrameBatch
from ring.memory import CANARY_TAG, OWNER_KERNEL, PAGE_SHIFT, PhysicalMemory, owner_name


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
    kind: str  # "dma", "leak", "integrity"
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

    # -- DMA -------------------------------------------------------------------------
    def on_dma(self, batch: DmaBatchLike) -> None:
        """Observer hook for DmaEngine.observers: check every allowed access against ground truth."""
        self.accesses += int(batch.allowed.size)
        owner = self.queue_owner.get(batch.device)
        for i in np.flatnonzero(batch.allowed & (batch.lengths > 0)).tolist():
            start = int(batch.phys[i])
            length = int(batch.lengths[i])
            frames = np.arange(start >> PAGE_SHIFT, ((start + length - 1) >> PAGE_SHIFT) + 1)
            owners = self.memory.owner[frames]
            data = batch.purpose.endswith("-data")
            if data:
                bad = owners != (owner if owner is not None else -99)
            else:  # descriptor rings: the owner's own, or kernel frames outside the secret region (shadow rings)
                secret = frames < self.memory.kernel_frames.count
                bad = ~((owners == owner) | ((owners == OWNER_KERNEL) & ~secret))
            if bool(bad.any()):
                frame = int(frames[np.argmax(bad)])
                code = int(self.memory.owner[frame])
                who = self.names.get(code, owner_name(code))
                self.escapes.append(
                    Escape(
                        "dma",
                        f"{batch.device} {batch.purpose} {batch.direction} of {length} bytes at "
                        f"{start:#x} touched frame {frame} owned by {who}",
                        batch.device,
                        start,
                        length,
                        who,
                    )
                )

    # -- the wire ----------------------------------------------------------------------
    def on_wire(self, source: str, frames: FrameBatch, _stamps: npt.NDArray[np.int64]) -> None:
        """Cable tap: any kernel canary or registered secret in a frame is a leak."""
        canaries = self.memory.canaries
        for raw in frames:
            at = raw.find(CANARY_TAG)
            while at >= 0:
                if raw[at : at + 32] in canaries:
                    self.escapes.append(Escape("leak", f"kernel canary sent by {source}", source, evidence=raw))
                    break
                at = raw.find(CANARY_TAG, at + 1)
            for marker, whose in self.secrets.items():
                if marker in raw:
                    self.escapes.append(Escape("leak", f"{whose}'s secret sent by {source}", source, evidence=raw))

    # -- integrity ---------------------------------------------------------------------
    def watch(self, name: str, phys: int, length: int) -> None:
        """Remember a region's hash; ``check_integrity`` reports it if it changed."""
        self._watched[name] = (phys, length, self._digest(phys, length))

    def check_integrity(self) -> None:
        for name, (phys, length, digest) in self._watched.items():
            if self._digest(phys, length) != digest:
                self.escapes.append(Escape("integrity", f"{name} was overwritten", address=phys, length=length))
                self._watched[name] = (phys, length, self._digest(phys, length))

    def _digest(self, phys: int, length: int) -> bytes:
        return hashlib.sha256(self.memory.data[phys : phys + length].tobytes()).digest()

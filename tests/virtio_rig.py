"""A rig for the virtio tests: the pingpong machine on virtio NICs, raw virtqueues the test writes itself, a wire log.

The tenant here may be the attacker: ``RawVirtq`` is the driver's own
virtqueue (its three areas and a buffer per descriptor) without the burst
logic, so a test writes exactly the descriptors, indirect tables and
available entries it wants judged, then notifies.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from driver.tenant.virtio_queue import Virtqueue
from ring.frames import FrameBatch
from ring.syscalls import DEVICE_READ, DEVICE_WRITE
from ring.virtio import VIRTQ_DESC
from verifier.audit.memory import MemoryAudit
from verifier.kernel import Process
from verifier.modes.protection import Protection
from world import scenario
from world.build import World
from world.virtio import EmulatedVirtio, virtio_world

READ_WRITE = DEVICE_READ | DEVICE_WRITE


def build(protection: Protection | str, pcap: str | bool = False) -> World[EmulatedVirtio]:
    scen = dataclasses.replace(scenario.load(), protection=Protection(protection))
    return virtio_world(scen, pcap=pcap, audit=MemoryAudit())


def wire_log(world: World[EmulatedVirtio]) -> list[bytes]:
    """Every frame that crosses the cable from now on, in order."""
    seen: list[bytes] = []

    def tap(_source: str, frames: FrameBatch, _stamps: npt.NDArray[np.int64]) -> None:
        seen.extend(frames)

    world.backend.cables[0].taps.append(tap)
    return seen


class RawVirtq(Virtqueue):
    """A virtqueue whose descriptors the test writes by hand (buffer ``i`` is at ``buf(i)``)."""

    def __init__(self, proc: Process, nic: str, index: int, size: int = 8, access: int = READ_WRITE) -> None:
        super().__init__(proc, nic, index, size, 2048, access)

    def buf(self, i: int) -> int:
        return int(self.pool.bus_addr[i])

    def set(self, i: int, length: int, flags: int = 0, nxt: int = 0, addr: int | None = None) -> None:
        self.desc[i] = (self.buf(i) if addr is None else addr, length, flags, nxt)

    def fill(self, i: int, data: bytes, offset: int = 0) -> None:
        start = i * self.pool.buf_size + offset
        self.pool.memory[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def post(self, *heads: int) -> None:
        self.make_available(np.array(heads, dtype=np.int64))

    def table_at(self, i: int, rows: list[tuple[int, int, int, int]]) -> tuple[int, int]:
        """Write an indirect table of (addr, len, flags, next) rows into buffer ``i``; its (address, byte length)."""
        t = np.array(rows, dtype=VIRTQ_DESC)
        self.fill(i, t.tobytes())
        return self.buf(i), t.nbytes

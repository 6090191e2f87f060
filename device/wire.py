"""Ports and the wires between them.

A ``Port`` is a device's MAC-side connector; a ``Cable`` joins two ports
and carries whole bursts (``FrameBatch``) from one to the other, stamping
them with its clock and showing them to its taps (pcap writers, the
fuzzer's canary scanner) on the way.  Other wires (TAP, AF_XDP) implement
the same two-method shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from device.clock import Clock, VirtualClock
from ring.frames import FrameBatch

#: A tap sees every burst that crosses a wire: (source port name, frames, time stamps in ns).
Tap = Callable[[str, FrameBatch, npt.NDArray[np.int64]], None]


class Wire(Protocol):
    def carry(self, source: Port, frames: FrameBatch) -> None: ...


class Port:
    """One end of a wire, owned by a device that receives through ``deliver``."""

    def __init__(self, name: str, deliver: Callable[[FrameBatch], None]) -> None:
        self.name = name
        self.deliver = deliver
        self.wire: Wire | None = None
        self.sent_frames = 0
        self.dropped_no_carrier = 0

    @property
    def connected(self) -> bool:
        return self.wire is not None

    def transmit(self, frames: FrameBatch) -> None:
        if self.wire is None:
            self.dropped_no_carrier += len(frames)
            return
        self.sent_frames += len(frames)
        self.wire.carry(self, frames)


class Cable:
    """A point-to-point Ethernet cable between two ports."""

    def __init__(self, a: Port, b: Port, clock: Clock | None = None) -> None:
        if a.wire is not None or b.wire is not None:
            raise ValueError("a port can be on one cable only")
        self.a, self.b = a, b
        self.clock: Clock = clock or VirtualClock()
        self.taps: list[Tap] = []
        a.wire = self
        b.wire = self

    def carry(self, source: Port, frames: FrameBatch) -> None:
        if self.taps:
            stamps = self.clock.stamp(frames.lengths)
            for tap in self.taps:
                tap(source.name, frames, stamps)
        (self.b if source is self.a else self.a).deliver(frames)

    def unplug(self) -> None:
        self.a.wire = None
        self.b.wire = None

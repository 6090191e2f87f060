"""Ports and the wires between them.

A ``Port`` is a device's MAC-side connector; a ``Cable`` joins two ports
and carries whole bursts (``FrameBatch``) from one to the other, stamping
them with its clock and showing them to its taps (pcap writers, the
fuzzer's canary scanner) on the way.  Other wires (TAP, AF_XDP) implement
the same two-method shape.

A port may also speak 802.3x flow control (PAUSE frames, 802.3 Annex 31B):
``room`` says how many frames the device behind it accepts right now when
it pauses its link partner (None: it never sends PAUSE), and ``resume`` is
what the partner does on XON (run its transmitter again).  Only a ``Cable``
between two emulated ports carries PAUSE; other wires have no partner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from device.clock import Clock, VirtualClock
from ring.frames import FrameBatch

#: A tap sees every burst that crosses a wire: (source port name, frames, time stamps in ns).
Tap = Callable[[str, FrameBatch, npt.NDArray[np.int64]], None]
#: A device's compiled arrival of a burst still in its sender's scratch: (frames, C pointer to their bytes back to
#: back, C pointer to their int64 lengths) -> True if it took the whole burst, False if it did nothing.
Arrive = Callable[[int, Any, Any], bool]


class Wire(Protocol):
    def carry(self, source: Port, frames: FrameBatch) -> None: ...


class Port:
    """One end of a wire, owned by a device that receives through ``deliver``."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[FrameBatch], None],
        room: Callable[[], int | None] | None = None,
        resume: Callable[[], None] | None = None,
        arrive: Arrive | None = None,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.arrive = arrive
        self.room: Callable[[], int | None] = room or _no_pause
        self.resume: Callable[[], None] = resume or _nothing
        self.wire: Wire | None = None
        self.sent_frames = 0
        self.dropped_no_carrier = 0

    @property
    def connected(self) -> bool:
        return self.wire is not None

    @property
    def partner(self) -> Port | None:
        """The port at the other end of this port's cable (None: no cable, or a wire with no partner port)."""
        wire = self.wire
        if isinstance(wire, Cable):
            return wire.b if self is wire.a else wire.a
        return None

    def partner_room(self) -> int | None:
        """Frames the link partner accepts now if it sends PAUSE (0: it paused us), None if it never does."""
        partner = self.partner
        return None if partner is None else partner.room()

    def resume_partner(self) -> None:
        """XON: tell the link partner it may transmit again."""
        partner = self.partner
        if partner is not None:
            partner.resume()

    def transmit(self, frames: FrameBatch) -> None:
        if self.wire is None:
            self.dropped_no_carrier += len(frames)
            return
        self.sent_frames += len(frames)
        self.wire.carry(self, frames)

    def transmit_burst(self, n: int, data: Any, lengths: Any, frames: Callable[[], FrameBatch]) -> None:
        """``transmit`` of ``n`` frames a compiled engine gathered into its scratch (C pointers ``data``, ``lengths``).

        On a plain cable (no tap to show the burst to) to a port that can take
        it compiled, the burst goes over as the two pointers, with no
        FrameBatch made; anything else (a tap, another wire, a receiver that
        refuses it) takes ``frames()``, the same burst as a FrameBatch, and
        ``transmit``'s way.  Either way the receiver sees one burst.
        """
        wire = self.wire
        if wire is None:
            self.dropped_no_carrier += n
            return
        self.sent_frames += n
        if type(wire) is Cable and not wire.taps:
            partner = wire.b if self is wire.a else wire.a
            if partner.arrive is not None and partner.arrive(n, data, lengths):
                return
        wire.carry(self, frames())


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


def _no_pause() -> int | None:
    return None


def _nothing() -> None:
    return None

"""A wire from an emulated NIC's port to a frame channel: a TAP device, or anything shaped like one.

Frames the NIC transmits (``Port.transmit`` -> ``carry``) are written to the
channel one by one, the way a TAP descriptor takes one frame per ``write``;
``pump`` reads what the channel has waiting and delivers it to the NIC as
one burst, so its address filter and RX engine see exactly what the Linux
stack sent.  The wire never blocks: the caller decides when to pump (after a
``select`` on ``fileno()``), which keeps one thread able to serve the TAP
and a child process at once.
"""

from __future__ import annotations

from typing import Protocol

from device.clock import Clock, WallClock
from device.wire import Port, Tap
from ring.frames import FrameBatch

#: Frames taken from the channel per delivery to the NIC: one RX burst, as a NAPI poll budget is.
DEFAULT_BURST = 64


class FrameChannel(Protocol):
    """One frame per read and per write, non-blocking: ``driver.tap.device.TapDevice`` or a SEQPACKET socket adapter."""

    def fileno(self) -> int: ...

    def read_frame(self) -> bytes | None: ...

    def write_frame(self, frame: bytes) -> bool: ...


class TapWire:
    """Joins ``port`` to ``channel``; ``taps`` see every burst, as a ``Cable``'s do."""

    def __init__(self, port: Port, channel: FrameChannel, burst: int = DEFAULT_BURST, clock: Clock | None = None):
        if port.wire is not None:
            raise ValueError(f"port {port.name} is on another wire already")
        self.port = port
        self.channel = channel
        self.burst = burst
        self.clock: Clock = clock or WallClock()
        self.taps: list[Tap] = []
        self.to_channel = 0  # frames the NIC sent that the channel took
        self.refused = 0  # frames the channel refused (a TAP whose interface is down)
        self.from_channel = 0  # frames read from the channel and delivered to the NIC
        port.wire = self

    def fileno(self) -> int:
        return self.channel.fileno()

    def _show(self, source: str, frames: FrameBatch) -> None:
        if self.taps and len(frames):
            stamps = self.clock.stamp(frames.lengths)
            for tap in self.taps:
                tap(source, frames, stamps)

    def carry(self, source: Port, frames: FrameBatch) -> None:
        """The NIC transmitted ``frames``: hand each to the channel."""
        self._show(source.name, frames)
        for frame in frames:
            if self.channel.write_frame(frame):
                self.to_channel += 1
            else:
                self.refused += 1

    def pump(self) -> int:
        """Deliver up to ``burst`` waiting frames to the NIC as one burst; return how many."""
        frames: list[bytes] = []
        while len(frames) < self.burst:
            frame = self.channel.read_frame()
            if not frame:  # nothing waiting (an empty read is no Ethernet frame either)
                break
            frames.append(frame)
        if not frames:
            return 0
        batch = FrameBatch.from_frames(frames)
        self._show("tap", batch)
        self.from_channel += len(frames)
        self.port.deliver(batch)
        return len(frames)

    def unplug(self) -> None:
        self.port.wire = None

"""The sandbox's own time for the batch tuner: wire time from the inline engine's clock, plus a modelled doorbell.

The inline engine runs the device inside the doorbell write and keeps time
with :class:`device.clock.VirtualClock`, which moves only by the time frames
take on a 1 Gb/s wire (preamble, FCS and inter-frame gap included).  That
clock alone would make every batch size equally fast: the wire is the only
cost it knows.  What batching amortises is the fixed cost of each doorbell
(on real hardware the store to the trapped tail register, the fault into
the kernel, the verifier's snapshot and check: about a microsecond or two;
io_uring's reason to submit many operations per system call).  So this clock
adds two declared costs to the same ``VirtualClock``:

- ``doorbell_ns`` for every doorbell a tenant rings (a tail write that posts
  at least one descriptor: ``tx_burst`` and ``rx_burst`` ring one each);
- ``consumer_ns`` per frame the consuming tenant processes (a slower
  consumer is a larger number).

Time is serial: one CPU runs both tenants one after the other and the wire
does not overlap them, the simplest machine on which the trade-off exists.
It is deterministic (same run, same nanoseconds), which is what lets a test
compare the tuner with an exhaustive sweep without any wall-clock noise.
Every number it gives is *modelled virtual time*, and the demo says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from device.clock import VirtualClock

#: Default modelled cost of one doorbell: the order of a trap into a kernel and back on current hardware.
DOORBELL_NS = 2_000


@dataclass
class CostClock:
    """Virtual nanoseconds: the 1 Gb/s wire of the inline engine's clock, plus doorbells and consumer work."""

    doorbell_ns: int = DOORBELL_NS
    consumer_ns: int = 0
    wire: VirtualClock = field(default_factory=lambda: VirtualClock(0))
    doorbells: int = 0

    def __post_init__(self) -> None:
        if self.doorbell_ns < 0 or self.consumer_ns < 0:
            raise ValueError(f"costs must be >= 0 ns, got doorbell {self.doorbell_ns}, consumer {self.consumer_ns}")

    @property
    def now_ns(self) -> int:
        return self.wire.now_ns

    def doorbell(self) -> None:
        """A tenant rang a doorbell: the trap and the check take their fixed time."""
        self.doorbells += 1
        self.wire.now_ns += self.doorbell_ns

    def send(self, lengths: npt.NDArray[np.int64]) -> None:
        """Frames of these lengths (FCS excluded) crossed the wire back to back."""
        self.wire.stamp(lengths)

    def consume(self, frames: int) -> None:
        """The consumer processed ``frames`` frames."""
        self.wire.now_ns += self.consumer_ns * frames

"""What a burst call says when it did less than it was asked: a count and a reason, never a silent drop.

A non-blocking ``write`` into a full pipe returns fewer bytes than asked,
or -1 with EAGAIN; ``splice`` with SPLICE_F_NONBLOCK does the same; DPDK's
``rte_eth_tx_burst`` returns how many mbufs it took and leaves the rest to
the caller.  ``TxQueue.tx_burst`` and ``RxQueue.rx_burst`` keep returning
what they always did (a count, a ``FrameBatch``), so no caller breaks, and
each queue also keeps ``last_shortfall``: ``None`` when its last call did
everything asked, else a ``Shortfall`` naming how much and why.  The
caller decides what to do with the rest: hold it and stop reading its
input (back-pressure), or drop it and count the drop where it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a burst did less than asked."""

    #: TX: no free descriptor; the device has not completed enough of the ring (EAGAIN).
    RING_FULL = "ring-full"
    #: TX: no free buffer in the queue's mempool (ENOBUFS).
    POOL_EMPTY = "pool-empty"
    #: RX: no more complete frames are in the ring now (EAGAIN on a non-blocking read).
    RING_EMPTY = "ring-empty"
    #: RX: more frames are ready than one call copies out; call again.
    MORE_READY = "more-ready"


@dataclass(frozen=True)
class Shortfall:
    """A burst asked for ``asked`` frames and did ``done`` of them, because of ``reason``."""

    asked: int
    done: int
    reason: Reason

    @property
    def missing(self) -> int:
        """Frames the caller still holds (TX) or did not get (RX)."""
        return self.asked - self.done

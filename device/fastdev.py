"""The device's compiled burst path (fastdev.c, declared in fastdev.h), as the engines load it.

Why: the numpy engines spend a burst of 256 small frames in some thirty
array calls (descriptor fetch, range checks, gather, write-back; on the
receive side fetch, scatter, write-back), most of it call overhead.  One
compiled call does the plain burst; anything else (fragments, DEXT, the
checksum offload, padding, a range outside memory, an IOMMU in the way, or
DMA observers such as the fuzzer's oracle that must see every access batch)
goes to the numpy engine, which stays the semantics: tests hold the two to
the same frames, bytes in memory and counters.

Loaded once per process through ring/compiled.py, which refuses a stale or
mismatched module; ``NIC_SANDBOX_FASTPATH=0`` runs the numpy engines alone.
"""

from __future__ import annotations

import logging
from functools import cache

from ring import compiled
from ring.cbuild import FASTDEV
from ring.descriptors import ETH_MIN_FRAME, MAX_TX_PACKET

LOG = logging.getLogger(__name__)


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The burst path the engines may use (or None), and the one line that says what the device runs."""
    constants = {"FASTDEV_MIN_FRAME": ETH_MIN_FRAME, "FASTDEV_MAX_TX_PACKET": MAX_TX_PACKET}
    return compiled.loaded(FASTDEV, constants, "device burst path", "the device runs its numpy engines", LOG)


def enabled() -> compiled.Compiled | None:
    return state()[0]


def status() -> str:
    return state()[1]

"""The tenant driver's compiled burst path (pmd.c, declared in pmd.h), as the queues load it.

Why: the numpy queues spend about a dozen array calls each on reaping,
posting and receiving a burst, most of it call overhead; a poll-mode
driver's inner loops are C in DPDK and ixy alike.  The compiled loops take
only the common burst and refuse anything else untouched, so the numpy
queues stay the semantics (tests hold the two to the same rings, pools,
frames and statistics).  Loaded once per process through ring/compiled.py;
``NIC_SANDBOX_FASTPATH=0`` runs the numpy queues alone.
"""

from __future__ import annotations

import logging
from functools import cache

from ring import compiled
from ring.cbuild import PMD
from ring.descriptors import RXD_STAT_DD, RXD_STAT_EOP, TXD_STAT_DD, TXD_STAT_REFUSED

LOG = logging.getLogger(__name__)


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The burst path the queues may use (or None), and the one line that says what the driver runs."""
    constants = {
        "PMD_TXD_STAT_DD": TXD_STAT_DD,
        "PMD_TXD_STAT_REFUSED": TXD_STAT_REFUSED,
        "PMD_RXD_STAT_DD": RXD_STAT_DD,
        "PMD_RXD_STAT_EOP": RXD_STAT_EOP,
    }
    return compiled.loaded(PMD, constants, "driver burst path", "the driver runs its numpy queues", LOG)


def enabled() -> compiled.Compiled | None:
    return state()[0]


def status() -> str:
    return state()[1]

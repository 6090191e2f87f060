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
import os
from functools import cache

from ring import compiled
from ring.cbuild import PMD
from ring.descriptors import RX_DESC, RXD_STAT_DD, RXD_STAT_EOP, TX_DESC, TXD_STAT_DD, TXD_STAT_REFUSED

LOG = logging.getLogger(__name__)


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The burst path the queues may use (or None), and the one line that says what the driver runs."""
    fast, why = compiled.load(
        PMD,
        {"struct tx_desc": TX_DESC, "struct rx_desc": RX_DESC},
        {
            "PMD_TXD_STAT_DD": TXD_STAT_DD,
            "PMD_TXD_STAT_REFUSED": TXD_STAT_REFUSED,
            "PMD_RXD_STAT_DD": RXD_STAT_DD,
            "PMD_RXD_STAT_EOP": RXD_STAT_EOP,
        },
        "the driver runs its numpy queues",
    )
    line = f"driver burst path: {why}"
    if fast is None and os.environ.get(compiled.SWITCH) != "0":
        LOG.warning(line)
    return fast, line


def enabled() -> compiled.Compiled | None:
    return state()[0]


def status() -> str:
    return state()[1]

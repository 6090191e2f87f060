"""A verbs layout without a device: the lab's MRs at made-up addresses with rxe-style keys (index << 8 | key).

Tests of the verbs generator and the verbs checks use it where the lab
VM's real soft-RoCE device is not there.
"""

from __future__ import annotations

import numpy as np

from fuzz.verbs_cases import MR_SPECS, RR, RW, VerbsLayout
from ring.verbs_format import MR_RECORD


def example_layout(max_send_sge: int = 4, max_recv_sge: int = 4) -> VerbsLayout:
    """The lab layout with made-up addresses and rxe-style keys: MR i gets lkey (i + 1) << 8 | a key byte."""
    arenas = {"tenant": 0x7F00_0000_0000, "other": 0x7F10_0000_0000}
    pds = {"tenant": 1, "other": 2}
    mrs = {}
    for i, spec in enumerate(MR_SPECS):
        lkey = ((i + 1) << 8) | (0x5A + 17 * i) & 0xFF
        row = np.zeros(1, dtype=MR_RECORD)
        rkey = lkey if spec.access & (RW | RR) else 0
        row[0] = (arenas[spec.owner] + spec.offset, spec.length, lkey, rkey, spec.access, pds[spec.owner])
        mrs[spec.name] = row[0]
    return VerbsLayout(mrs, max_send_sge, max_recv_sge)

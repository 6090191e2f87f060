"""What the verifier says to each attack of the attack set: one table for the emulated demo and the lab.

The lab (lab/guest/attacks.py) runs the attack demo's attacks (sandbox/demos/attack.py) against a real
82574L under VFIO; the verifier in front of it must refuse each one for the same reason as in front of
the emulated e1000.  The descriptor-rewrite race has no entry: in mode ``verifier`` there is nothing to
refuse (the device only ever reads the kernel's copy), and the lab has no such attack.
"""

from __future__ import annotations

VERIFIER_REASON = {
    "tx-kernel-memory": "ADDR_NOT_PINNED",
    "tx-other-tenant": "ADDR_NOT_PINNED",
    "rx-into-kernel": "ADDR_NOT_PINNED",
    "straddle-pin-end": "ADDR_NOT_PINNED",
    "addr-wrap": "ADDR_WRAP",
    "unpin-in-flight": "PIN_IN_FLIGHT",
    "repoint-ring-base": "REG_NOT_DOORBELL",
}

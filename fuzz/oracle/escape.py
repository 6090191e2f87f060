"""What the oracle reports: one escape (or liveness, crash, audit finding), with the evidence.

Its own module so the oracle's parts (fuzz/oracle/judge.py: DMA, wires and memory; fuzz/oracle/liveness.py;
fuzz/oracle/audit.py) share one record type without importing each other at run time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Escape:
    #: "dma", "pin", "leak", "integrity", "crash", "liveness", "audit", "rule", "ring", "queue", "syscall", "race"
    kind: str
    what: str  # a one-line account
    device: str = ""
    address: int = -1
    length: int = 0
    owner: str = ""
    evidence: bytes = b""

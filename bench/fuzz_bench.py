"""Fuzzer throughput: malicious descriptors tried per second on one core, batch mode and one at a time.

Every class in round robin, judged by the oracle, rejections counted by an
in-memory audit sink (``MemoryAudit``: the campaign default).  Issue 4's
goal is 200,000 descriptors per second per core in batch mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz.campaign import run_campaign

GOAL = 200_000


@dataclass(frozen=True)
class FuzzRate:
    protection: str
    batch: int
    descriptors: int
    seconds: float
    escapes: int

    @property
    def rate(self) -> float:
        return self.descriptors / self.seconds if self.seconds > 0 else 0.0


def measure(protection: str, batch: int, seconds: float = 1.5, seed: int = 1) -> FuzzRate:
    """One time-bounded campaign over every class; a fresh arena every 128 batches."""
    arena_every = 128
    result = run_campaign(protection, seed, seconds=seconds, batch=batch, arena_every=arena_every)
    return FuzzRate(protection, batch, result.descriptors, result.seconds, result.escapes)


def main() -> None:  # python -m bench.fuzz_bench
    for protection in ("none", "verifier", "iommu"):
        for batch in (1, 255):
            r = measure(protection, batch)
            print(f"{protection:9} batch {batch:3}: {r.rate:12,.0f} desc/s ({r.escapes:,} escapes)")


if __name__ == "__main__":
    main()

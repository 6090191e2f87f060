"""Protection modes: who stands between a tenant's descriptors and the device.

| mode | device reads descriptors from | addresses | what stops an attack |
|---|---|---|---|
| none | the user ring | physical | nothing: the attack demo leaks |
| verifier | a kernel shadow ring | physical | the kernel checks a snapshot before the doorbell |
| iommu | the user ring | IO virtual | an emulated IOMMU translates and faults |
| unsafe-inplace | the user ring, checked in place | physical | nothing against a race (TOCTOU) |
"""

from __future__ import annotations

from enum import StrEnum


class Protection(StrEnum):
    NONE = "none"
    VERIFIER = "verifier"
    IOMMU = "iommu"
    UNSAFE_INPLACE = "unsafe-inplace"

    @property
    def help(self) -> str:
        return PROTECTION_HELP[self]

    @property
    def traps_doorbell(self) -> bool:
        """The kernel sees every tail write and restricts the register window to tails."""
        return self in (Protection.VERIFIER, Protection.UNSAFE_INPLACE)


PROTECTION_HELP: dict[Protection, str] = {
    Protection.NONE: "doorbell goes straight to the device; nothing stops a hostile descriptor",
    Protection.VERIFIER: "the kernel snapshots new descriptors into a shadow ring, checks them, then rings the device",
    Protection.IOMMU: "descriptors carry IO virtual addresses; an emulated IOMMU translates every DMA and faults",
    Protection.UNSAFE_INPLACE: (
        "checks descriptors where they lie in the user ring and lets the device read them there: "
        "deliberately open to a time-of-check/time-of-use race, kept to show why the snapshot matters"
    ),
}

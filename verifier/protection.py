"""Protection modes: who checks descriptors before the device acts on them.

``none`` is the world without an IOMMU and without a verifier: the tenant's
doorbell write goes straight to the device, which DMAs wherever the
descriptors point.  It is the baseline the attack demo leaks through.
"""

from __future__ import annotations

from enum import StrEnum


class Protection(StrEnum):
    NONE = "none"

    @property
    def help(self) -> str:
        return PROTECTION_HELP[self]


PROTECTION_HELP: dict[Protection, str] = {
    Protection.NONE: "doorbell goes straight to the device; nothing stops a hostile descriptor",
}

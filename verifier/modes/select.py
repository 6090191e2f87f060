"""The one place a ``Protection`` value becomes the object that implements it (chosen once, by the kernel)."""

from __future__ import annotations

from verifier.modes.base import ProtectionMode
from verifier.modes.inplace import InPlaceMode
from verifier.modes.iommu import FaultHandler, IommuMode
from verifier.modes.none import NoProtection
from verifier.modes.protection import Protection
from verifier.modes.shadow import VerifierMode

MODES: dict[Protection, type[ProtectionMode]] = {
    mode.protection: mode for mode in (NoProtection, VerifierMode, IommuMode, InPlaceMode)
}


def mode_for(protection: Protection, on_fault: FaultHandler | None = None) -> ProtectionMode:
    """The mode object of ``protection``; ``on_fault`` hears each DMA batch's IOMMU faults (mode ``iommu``)."""
    return MODES[Protection(protection)](on_fault)

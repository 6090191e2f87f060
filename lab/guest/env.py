"""Facts a program inside the lab VM asks about: am I in the lab, where is the run folder, the kernel log.

The guest's init (lab/init.sh) exports these variables to the command it runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: Set to 1 by the guest's init; nothing else sets it.
LAB_ENV = "NIC_SANDBOX_LAB"
#: Exists only when vfio.ko was built with CONFIG_VFIO_NOIOMMU (lab/noiommu.py): the no-IOMMU variant's.
NOIOMMU_PARAM = Path("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode")
#: The lab's boot variants: the default one has a VT-d IOMMU, ``noiommu`` has none (lab/qemu.py).
VARIANT_IOMMU = "iommu"
VARIANT_NOIOMMU = "noiommu"


def in_lab() -> bool:
    """True inside the lab VM (the guest's init exported NIC_SANDBOX_LAB=1)."""
    return os.environ.get(LAB_ENV) == "1"


def variant() -> str:
    """Which lab this is: ``noiommu`` when vfio's no-IOMMU mode is on, else ``iommu``."""
    try:
        return VARIANT_NOIOMMU if NOIOMMU_PARAM.read_text().strip() == "Y" else VARIANT_IOMMU
    except OSError:
        return VARIANT_IOMMU


def run_dir() -> Path:
    """This run's folder, shared with the host (files written here survive the VM)."""
    return Path(os.environ.get("LAB_RUN_DIR", "/lab/run"))


def rxe_device() -> str:
    """The soft-RoCE device the init created on the virtio-net ("" if that failed)."""
    return os.environ.get("LAB_RXE_DEVICE", "")


def kernel_log() -> str:
    """The guest kernel's ring buffer now (dmesg), with the kernel's timestamps."""
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout

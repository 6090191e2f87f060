"""The QEMU command line of the lab VM, and the guest's fixed device addresses.

- ``q35`` with ``intel-iommu,intremap=on,caching-mode=on`` and a split
  irqchip: an emulated VT-d (hw/i386/intel_iommu.c) that translates every
  DMA of the devices behind it and reports faults in its fault recording
  registers, which the guest's DMAR driver prints.  Interrupt remapping
  needs the split irqchip; VFIO type1 refuses a group without it unless
  ``allow_unsafe_interrupts`` is set.
- ``-accel tcg,thread=multi``: this host's /dev/kvm (a nested PVM host)
  cannot run a stock kernel.
- ``e1000e`` (82574L) with no netdev: nothing it sends leaves QEMU; it
  receives through its own PHY loopback.  QEMU 7.2 from Debian has no igb.
- ``virtio-net`` on a ``user`` netdev with ``restrict=on`` (no way out of
  QEMU) carries soft-RoCE (rxe).
- Three virtio-9p shares: the root file system (read-only), the project and
  this run's folder (read-write).

The no-IOMMU variant (``LabImage.noiommu``, lab/noiommu.py) has no
``intel-iommu`` at all and boots with ``vfio.enable_unsafe_noiommu_mode=1``:
vfio-pci then gives the e1000e a ``/dev/vfio/noiommu-N`` group, and the
device reaches every guest-physical address (Documentation/driver-api/vfio.rst,
"VFIO No-IOMMU mode").

The devices sit at fixed slots of the root bus, so the guest's PCI
addresses are known in advance (``E1000E_BDF``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.image import LabImage

#: PCI slots on the q35 root bus (pcie.0); slot 0 is the host bridge, 0x1f the LPC/SATA/SMBus functions.
E1000E_SLOT = 0x02
VIRTIO_NET_SLOT = 0x03
P9_SLOTS = {"rootfs": 0x04, "project": 0x05, "labrun": 0x06}
#: The 82574L in the guest: bus 0, device E1000E_SLOT, function 0.
E1000E_BDF = f"0000:00:{E1000E_SLOT:02x}.0"
#: A locally administered MAC for the e1000e (it only ever talks to itself through PHY loopback).
E1000E_MAC = "02:00:00:00:82:74"

KERNEL_ARGS = (
    "console=ttyS0",
    "intel_iommu=on",
    "quiet",
    "loglevel=3",  # DMAR faults (KERN_ERR) go to dmesg, not into the command's console output
    "panic=-1",  # a panic reboots at once, and -no-reboot turns that into QEMU's exit
    "8250.nr_uarts=1",
)
#: The no-IOMMU variant: no VT-d, and vfio.ko's no-IOMMU mode on (applied by init.sh's insmod).
NOIOMMU_KERNEL_ARGS = (*(a for a in KERNEL_ARGS if a != "intel_iommu=on"), "vfio.enable_unsafe_noiommu_mode=1")


@dataclass(frozen=True)
class VmConfig:
    memory: str = "1G"
    cpus: int = 2
    interactive: bool = False  # the serial line is the user's terminal (Ctrl-A x leaves QEMU)


def command(image: LabImage, project: Path, run_dir: Path, config: VmConfig) -> list[str]:
    """argv for qemu-system-x86_64."""
    shares = {"rootfs": (image.rootfs, True), "project": (project, False), "labrun": (run_dir, False)}
    argv = [
        "qemu-system-x86_64",
        "-machine", "q35,kernel-irqchip=split",
        "-accel", "tcg,thread=multi",
        "-cpu", "max",
        "-m", config.memory,
        "-smp", str(config.cpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "mon:stdio" if config.interactive else "stdio",
        "-kernel", str(image.vmlinux),
        "-initrd", str(image.initramfs),
        "-append", " ".join(NOIOMMU_KERNEL_ARGS if image.noiommu else KERNEL_ARGS),
    ]  # fmt: skip
    if not image.noiommu:  # the IOMMU first: it must exist before the devices it translates for are realised
        argv += ["-device", "intel-iommu,intremap=on,caching-mode=on"]
    argv += [
        "-device", f"e1000e,addr={E1000E_SLOT:#x},mac={E1000E_MAC}",
        "-netdev", "user,id=rxenet,restrict=on",
        "-device", f"virtio-net-pci,netdev=rxenet,addr={VIRTIO_NET_SLOT:#x}",
    ]  # fmt: skip
    for tag, (path, readonly) in shares.items():
        ro = ",readonly=on" if readonly else ""
        argv += [
            "-fsdev", f"local,id={tag},path={path},security_model=none{ro}",
            "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag},addr={P9_SLOTS[tag]:#x}",
        ]  # fmt: skip
    return argv

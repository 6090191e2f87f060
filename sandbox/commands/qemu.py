"""``nic-sandbox demo --nic emulated|qemu|virtio``: which device model the pingpong demo's NICs are.

``qemu`` runs the same demo, the same kernel and the same user-space queues
against QEMU's e1000 (world/qemu.py): a device nobody here wrote.
It needs ``qemu-system-x86_64`` (Debian package qemu-system-x86) and no root.
``virtio`` runs it on emulated virtio-net NICs (world/virtio.py): split
virtqueues instead of e1000 rings, under protection ``none`` or ``verifier``.
"""

from __future__ import annotations

import argparse

from driver.qemu.machine import QemuError
from ring.virtio import DEVICE_QUEUE_NUM_MAX
from sandbox.errors import UsageError
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection
from verifier.virtio.gate import SUPPORTED as VIRTIO_PROTECTIONS
from world.build import World
from world.emulated import Emulated
from world.qemu import Qemu, qemu_world
from world.scenario import Scenario
from world.virtio import EmulatedVirtio, virtio_world

EMULATED = "emulated"
QEMU = "qemu"
VIRTIO = "virtio"
NIC_CHOICES = (EMULATED, QEMU, VIRTIO)
#: What ``--nic virtio`` says of the protection modes it refuses.
VIRTIO_MODES = " and ".join(p.value for p in VIRTIO_PROTECTIONS)
#: pingpong frames by default over QEMU: every register access is a qtest round trip (about 40,000 frames/s).
QEMU_DEFAULT_COUNT = 20_000


def add_nic_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nic",
        choices=NIC_CHOICES,
        default=EMULATED,
        help="emulated (the sandbox's own e1000, default), qemu: QEMU's e1000 over qtest, its guest "
        f"RAM shared with the kernel (default --count {QEMU_DEFAULT_COUNT} then; needs qemu-system-x86_64), or "
        f"virtio: emulated virtio-net NICs with split virtqueues (protection {VIRTIO_MODES} only)",
    )


def nic_flag_problem(args: argparse.Namespace) -> str | None:
    """Why the flags cannot go with ``--nic qemu`` or ``--nic virtio`` (None if they can)."""
    if args.nic == VIRTIO:
        if args.engine not in (None, "inline"):
            return "--engine threaded applies to emulated e1000 NICs (the virtio device runs inline)"
        if args.protection is not None and Protection(args.protection) not in VIRTIO_PROTECTIONS:
            return f"--nic virtio supports --protection {VIRTIO_MODES}, not {args.protection}"
        return None
    if args.nic != QEMU:
        return None
    if args.engine is not None:
        return "--engine applies to emulated NICs (QEMU runs its e1000 on its own main loop)"
    if args.protection == Protection.IOMMU.value:
        return "--protection iommu needs emulated NICs (QEMU's e1000 DMAs guest-physical addresses)"
    return None


def default_count(args: argparse.Namespace, emulated_default: int) -> int:
    if args.count:
        return int(args.count)
    return QEMU_DEFAULT_COUNT if args.nic == QEMU else emulated_default


def virtio_problem(scen: Scenario) -> str | None:
    """Why the scenario cannot run on virtio NICs (None if it can): its mode, engine and ring sizes."""
    if scen.protection not in VIRTIO_PROTECTIONS:
        return f"{scen.source}: protection {scen.protection.value}: virtio NICs support {VIRTIO_MODES}"
    if scen.engine.value != "inline":
        return f"{scen.source}: engine {scen.engine.value}: the virtio device runs inline"
    for t in scen.tenants:
        if t.ring & (t.ring - 1) or t.ring > DEVICE_QUEUE_NUM_MAX:
            return (
                f"{scen.source}: tenant {t.name}: ring {t.ring} is not a virtqueue size "
                f"(a power of 2 up to the device's {DEVICE_QUEUE_NUM_MAX})"
            )
    return None


def build_world(
    args: argparse.Namespace, scen: Scenario, pcap: str | bool, audit: AuditSink
) -> World[Emulated] | World[Qemu] | World[EmulatedVirtio]:
    """The demo's world for ``--nic``; QEMU problems and an unwritable pcap become one-line usage errors."""
    try:
        if args.nic == VIRTIO:
            if problem := virtio_problem(scen):
                raise UsageError(problem)
            return virtio_world(scen, pcap=pcap, audit=audit)
        if args.nic != QEMU:
            return World.build(scen, pcap=pcap, audit=audit)
        if scen.protection is Protection.IOMMU:
            raise UsageError(
                f"{scen.source}: protection iommu needs emulated NICs (QEMU's e1000 DMAs physical addresses)"
            )
        try:
            return qemu_world(scen, pcap=pcap, audit=audit)
        except (QemuError, ValueError) as err:
            raise UsageError(f"--nic qemu: {err}") from None
    except OSError as err:  # the pcap's directory or file (the world built nothing else on disk)
        raise UsageError(f"{err.filename}: {err.strerror}" if err.filename else str(err)) from None

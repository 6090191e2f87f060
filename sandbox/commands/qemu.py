"""``nic-sandbox demo --nic emulated|qemu``: which device model the pingpong demo's NICs are.

``qemu`` runs the same demo, the same kernel and the same user-space queues
against QEMU's e1000 (world/qemu.py): a device nobody here wrote.
It needs ``qemu-system-x86_64`` (Debian package qemu-system-x86) and no root.
"""

from __future__ import annotations

import argparse

from driver.qemu.machine import QemuError
from sandbox.errors import UsageError
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection
from world.build import World
from world.emulated import Emulated
from world.qemu import Qemu, qemu_world
from world.scenario import Scenario

EMULATED = "emulated"
QEMU = "qemu"
NIC_CHOICES = (EMULATED, QEMU)
#: pingpong frames by default over QEMU: every register access is a qtest round trip (about 40,000 frames/s).
QEMU_DEFAULT_COUNT = 20_000


def add_nic_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nic",
        choices=NIC_CHOICES,
        default=EMULATED,
        help="emulated (the sandbox's own e1000, default) or qemu: QEMU's e1000 over qtest, its guest "
        f"RAM shared with the kernel (default --count {QEMU_DEFAULT_COUNT} then; needs qemu-system-x86_64)",
    )


def nic_flag_problem(args: argparse.Namespace) -> str | None:
    """Why the flags cannot go with ``--nic qemu`` (None if they can)."""
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


def build_world(
    args: argparse.Namespace, scen: Scenario, pcap: str | bool, audit: AuditSink
) -> World[Emulated] | World[Qemu]:
    """The demo's world for ``--nic``; QEMU problems and an unwritable pcap become one-line usage errors."""
    try:
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

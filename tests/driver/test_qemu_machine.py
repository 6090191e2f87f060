"""QEMU as a bare device model: the firmware, the PCI probe, the BAR, shared RAM and the qtest protocol."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from driver import pci
from driver.qemu.args import QemuNicSpec, option_path
from driver.qemu.firmware import FIRMWARE_SIZE, OP_HLT, RESET_VECTOR_OFFSET, halting_firmware
from driver.qemu.loopback import cable_socket
from driver.qemu.machine import BAR0_BASE, QemuError, QemuMachine
from driver.qemu.qtest import QtestError
from ring import regs
from tests.driver.qemu_rig import MACS, Rig, qemu_rig


@pytest.fixture(scope="module")
def two_nics() -> Iterator[Rig]:
    """One machine for the read-mostly checks of this module (nothing here changes the devices' state)."""
    with qemu_rig(nics=2) as rig:
        yield rig


def test_firmware_halts_at_the_reset_vector() -> None:
    image = halting_firmware()
    assert len(image) == FIRMWARE_SIZE
    # cli; hlt; jmp rel8 -3 (back onto the hlt) at physical 0xFFFFFFF0
    assert image[RESET_VECTOR_OFFSET : RESET_VECTOR_OFFSET + 4] == bytes.fromhex("faf4ebfd")
    assert image.count(OP_HLT) == FIRMWARE_SIZE - 3


def test_paths_with_comma_or_equals_are_refused() -> None:
    for bad in ("/tmp/a,b.pcap", "/tmp/a=b.pcap"):
        with pytest.raises(ValueError, match="','"):
            option_path(bad)


@pytest.mark.privileged
def test_probe_finds_every_e1000_in_slot_order(two_nics: Rig) -> None:
    config = pci.PciConfig(two_nics.machine.connection)
    found = config.find(pci.VENDOR_INTEL, pci.DEVICE_82540EM)
    assert [(f.vendor, f.device_id) for f in found] == [(0x8086, 0x100E)] * 2
    assert [f.bdf for f in found] == ["00:02.0", "00:03.0"]
    for i, fn in enumerate(found):
        assert config.read32(fn, pci.BAR0) & pci.BAR_ADDRESS_MASK == BAR0_BASE + i * regs.BAR0_SIZE
        command = config.read32(fn, pci.COMMAND)
        assert command & (pci.COMMAND_MEMORY | pci.COMMAND_BUS_MASTER) == pci.COMMAND_MEMORY | pci.COMMAND_BUS_MASTER
        assert config.bar_size(fn) == regs.BAR0_SIZE
    assert config.read32((0, 31, 0), pci.VENDOR_ID) == 0xFFFF_FFFF  # an empty slot: master abort


@pytest.mark.privileged
def test_registers_show_the_mac_and_the_link(two_nics: Rig) -> None:
    for i, name in enumerate(("nic0", "nic1")):
        dev = two_nics.nic(name)
        ral, rah = dev.read32(regs.RAL0), dev.read32(regs.RAH0)
        assert ral.to_bytes(4, "little") + (rah & 0xFFFF).to_bytes(2, "little") == MACS[i]
        assert rah & regs.RAH_AV
        assert dev.read32(regs.STATUS) & regs.STATUS_LU
        assert dev.read32(regs.BAR0_SIZE) == 0xFFFF_FFFF  # outside the BAR: as the emulated NIC answers
        assert dev.read32(regs.STATUS + 1) == 0xFFFF_FFFF  # unaligned


@pytest.mark.privileged
def test_guest_ram_is_the_sandbox_memory(two_nics: Rig) -> None:
    """What QEMU reads and writes at a guest-physical address is the same byte of PhysicalMemory."""
    qtest = two_nics.machine.connection
    frame = two_nics.memory.alloc(4096, owner=3)
    pattern = bytes(range(256)) * 2
    qtest.write(frame.phys, pattern)
    qtest.flush()
    assert two_nics.memory.view(frame.phys, len(pattern)).tobytes() == pattern
    two_nics.memory.view(frame.phys + 1024, 4)[:] = np.frombuffer(b"\xde\xad\xbe\xef", dtype=np.uint8)
    assert qtest.read(frame.phys + 1024, 4) == b"\xde\xad\xbe\xef"
    assert qtest.readl(frame.phys + 1024) == 0xEFBEADDE


@pytest.mark.privileged
def test_refused_commands_raise(two_nics: Rig) -> None:
    qtest = two_nics.machine.connection
    with pytest.raises(QtestError, match="refused"):
        qtest.execute(["no_such_command 1"])
    qtest.post("no_such_command 2")  # a posted command fails at the next read, as a posted PCI write would
    with pytest.raises(QtestError, match="no_such_command 2"):
        qtest.flush()
    qtest.post("no_such_command 3")
    with pytest.raises(QtestError, match="no_such_command 3"):
        two_nics.nic("nic0").read32(regs.STATUS)  # the read reports the earlier posted failure ...
    assert two_nics.nic("nic0").read32(regs.STATUS) & regs.STATUS_LU  # ... and the connection is still in step


def test_a_missing_binary_is_one_clear_error() -> None:
    spec = QemuNicSpec("nic0", MACS[0], cable_socket())
    with pytest.raises(QemuError, match="not installed"):
        QemuMachine([spec], 16 << 20, binary="/nonexistent/qemu-system-x86_64")
    assert spec.sock.fileno() == -1  # the machine owned the cable socket and closed it on the way out


@pytest.mark.parametrize(
    ("nics", "memory", "message"),
    [(0, 16 << 20, "at least one NIC"), (1, 4 << 30, "at most"), (1, (16 << 20) + 1, "whole number of MiB")],
)
def test_a_refused_machine_closes_its_cable_sockets(nics: int, memory: int, message: str) -> None:
    """Refused before or while building QEMU's command line: no socket (and no QEMU) is left open."""
    specs = [QemuNicSpec(f"nic{i}", MACS[i], cable_socket()) for i in range(nics)]
    with pytest.raises(ValueError, match=message):
        QemuMachine(specs, memory)
    assert all(spec.sock.fileno() == -1 for spec in specs)

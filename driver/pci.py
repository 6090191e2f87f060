"""PCI configuration space through the legacy I/O ports 0xCF8/0xCFC, and the steps to enable a device.

No firmware has enumerated the bus (the sandbox's firmware only halts the
CPU, driver/qemu/firmware.py), so the project does what a BIOS does: find
the device by vendor and device ID, give BAR0 an address, and enable memory
decoding and bus mastering (PCI Local Bus Specification 3.0, 3.2.2.3.2
"Configuration Mechanism #1" and 6.2 "Configuration Space Functions").
Until COMMAND.BME is set QEMU drops every DMA the device tries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# -- configuration mechanism #1 (3.2.2.3.2) ---------------------------------
CONFIG_ADDRESS = 0x0CF8
CONFIG_DATA = 0x0CFC
CONFIG_ENABLE = 1 << 31
BUS_SHIFT = 16
DEVICE_SHIFT = 11
FUNCTION_SHIFT = 8
DEVICES_PER_BUS = 32

# -- configuration header, type 0 (6.1) -------------------------------------
VENDOR_ID = 0x00  # low 16 bits; DEVICE_ID in the high 16 bits of the same dword
DEVICE_ID = 0x02
COMMAND = 0x04  # low 16 bits; STATUS in the high 16 bits
STATUS_SHIFT = 16  # STATUS is the high half of the dword at COMMAND
REVISION_ID = 0x08  # low 8 bits; class code above
BAR0 = 0x10
BAR_COUNT = 6  # BAR0..BAR5 at 0x10..0x24 (6.2.5.1)
CAP_PTR = 0x34  # low 8 bits: configuration offset of the first capability (6.7)
CAP_PTR_MASK = 0xFC  # the bottom two bits are reserved (6.7)
NO_DEVICE = 0xFFFF  # an empty slot reads all ones (master abort)

COMMAND_IO = 1 << 0
COMMAND_MEMORY = 1 << 1  # respond to memory space accesses (the BAR)
COMMAND_BUS_MASTER = 1 << 2  # may master the bus: DMA
STATUS_CAP_LIST = 1 << 4  # the function has a capability list at CAP_PTR (6.2.3)

BAR_IO_SPACE = 1 << 0
BAR_TYPE_MASK = 0x6  # memory BAR type: 00 = 32-bit, 10 = 64-bit
BAR_TYPE_64 = 0x4  # a 64-bit memory BAR: the next BAR holds the high 32 bits (6.2.5.1)
BAR_ADDRESS_MASK = 0xFFFF_FFF0

# -- the device this project drives ----------------------------------------
VENDOR_INTEL = 0x8086
DEVICE_82540EM = 0x100E  # QEMU's "e1000": the 82540EM desktop adapter


class PortIo(Protocol):
    """x86 I/O port access (what qtest's ``outl``/``inl`` give)."""

    def outl(self, port: int, value: int) -> None: ...

    def inl(self, port: int) -> int: ...


@dataclass(frozen=True)
class PciFunction:
    """One function on a bus, by address and identity."""

    bus: int
    device: int
    function: int
    vendor: int
    device_id: int

    @property
    def bdf(self) -> str:
        return f"{self.bus:02x}:{self.device:02x}.{self.function}"


@dataclass(frozen=True)
class Capability:
    """One entry of a function's capability list: its ID, where it sits and its raw bytes."""

    offset: int  # in configuration space
    cap_id: int
    raw: bytes  # from ``offset`` up to the end of the 256-byte configuration space: the caller knows the length


def bar_offset(index: int) -> int:
    """Configuration offset of BAR ``index`` (0..5)."""
    if not 0 <= index < BAR_COUNT:
        raise ValueError(f"a type 0 header has BARs 0..{BAR_COUNT - 1}, not {index}")
    return BAR0 + 4 * index


def config_address(bus: int, device: int, function: int, offset: int) -> int:
    """The CONFIG_ADDRESS dword selecting one register (``offset`` is dword aligned)."""
    if offset & 3 or not 0 <= offset < 256:
        raise ValueError(f"configuration offset must be a dword offset below 256, got {offset:#x}")
    return CONFIG_ENABLE | bus << BUS_SHIFT | device << DEVICE_SHIFT | function << FUNCTION_SHIFT | offset


class PciConfig:
    """Configuration reads and writes through CONFIG_ADDRESS/CONFIG_DATA."""

    def __init__(self, io: PortIo) -> None:
        self.io = io

    def read32(self, fn: PciFunction | tuple[int, int, int], offset: int) -> int:
        bus, device, function = _address(fn)
        self.io.outl(CONFIG_ADDRESS, config_address(bus, device, function, offset))
        return self.io.inl(CONFIG_DATA)

    def write32(self, fn: PciFunction | tuple[int, int, int], offset: int, value: int) -> None:
        bus, device, function = _address(fn)
        self.io.outl(CONFIG_ADDRESS, config_address(bus, device, function, offset))
        self.io.outl(CONFIG_DATA, value)

    def read8(self, fn: PciFunction | tuple[int, int, int], offset: int) -> int:
        """One byte of configuration space (mechanism #1 reads whole dwords; the byte is picked out)."""
        return (self.read32(fn, offset & ~3) >> (8 * (offset & 3))) & 0xFF

    def config_bytes(self, fn: PciFunction, start: int, end: int = 256) -> bytes:
        """Configuration space from ``start`` (dword aligned) to ``end``, as bytes."""
        return b"".join(self.read32(fn, off).to_bytes(4, "little") for off in range(start, end, 4))

    def capabilities(self, fn: PciFunction) -> list[Capability]:
        """Walk the capability list (6.7): STATUS.CAP_LIST, then CAP_PTR, then each entry's next pointer.

        A hostile or broken device could make the list loop; a walk stops
        after as many entries as fit in the 192 bytes after the header.
        """
        if not (self.read32(fn, COMMAND) >> STATUS_SHIFT) & STATUS_CAP_LIST:
            return []
        space = self.config_bytes(fn, 0)
        caps: list[Capability] = []
        offset = space[CAP_PTR] & CAP_PTR_MASK
        seen: set[int] = set()
        while offset and offset not in seen and len(caps) < (256 - 0x40) // 4:
            seen.add(offset)
            caps.append(Capability(offset, space[offset], space[offset:]))
            offset = space[offset + 1] & CAP_PTR_MASK if offset + 1 < len(space) else 0
        return caps

    def scan(self, bus: int = 0) -> list[PciFunction]:
        """Function 0 of every populated slot of ``bus``."""
        found = []
        for device in range(DEVICES_PER_BUS):
            ident = self.read32((bus, device, 0), VENDOR_ID)
            vendor = ident & 0xFFFF
            if vendor != NO_DEVICE:
                found.append(PciFunction(bus, device, 0, vendor, ident >> 16))
        return found

    def find(self, vendor: int, device_id: int, bus: int = 0) -> list[PciFunction]:
        return [f for f in self.scan(bus) if f.vendor == vendor and f.device_id == device_id]

    def bar_size(self, fn: PciFunction, bar: int = BAR0) -> int:
        """Size of a 32-bit memory BAR: write all ones, read the mask back, restore (6.2.5.1)."""
        old = self.read32(fn, bar)
        self.write32(fn, bar, 0xFFFF_FFFF)
        mask = self.read32(fn, bar) & BAR_ADDRESS_MASK
        self.write32(fn, bar, old)
        return (~mask & 0xFFFF_FFFF) + 1 if mask else 0

    def memory_bar_size(self, fn: PciFunction, index: int) -> tuple[int, bool]:
        """Size of memory BAR ``index`` and whether it is 64-bit (both halves sized, 6.2.5.1)."""
        offset = bar_offset(index)
        raw = self.read32(fn, offset)
        if raw & BAR_IO_SPACE:
            raise ValueError(f"{fn.bdf}: BAR{index} is an I/O BAR ({raw:#x})")
        wide = raw & BAR_TYPE_MASK == BAR_TYPE_64
        if not wide:
            return self.bar_size(fn, offset), False
        high = self.read32(fn, offset + 4)
        self.write32(fn, offset, 0xFFFF_FFFF)
        self.write32(fn, offset + 4, 0xFFFF_FFFF)
        mask = (self.read32(fn, offset + 4) << 32 | self.read32(fn, offset)) & ~0xF & (1 << 64) - 1
        self.write32(fn, offset, raw)
        self.write32(fn, offset + 4, high)
        return ((~mask & (1 << 64) - 1) + 1 if mask else 0), True

    def place_memory_bar(self, fn: PciFunction, index: int, address: int) -> None:
        """Put memory BAR ``index`` at ``address`` (both halves of a 64-bit BAR); memory decoding stays as it is."""
        offset = bar_offset(index)
        raw = self.read32(fn, offset)
        if raw & BAR_IO_SPACE:
            raise ValueError(f"{fn.bdf}: BAR{index} is an I/O BAR ({raw:#x})")
        self.write32(fn, offset, address & BAR_ADDRESS_MASK)
        if raw & BAR_TYPE_MASK == BAR_TYPE_64:
            self.write32(fn, offset + 4, address >> 32)
        elif address >> 32:
            raise ValueError(f"{fn.bdf}: BAR{index} is 32-bit, {address:#x} does not fit")

    def enable_decoding(self, fn: PciFunction) -> None:
        """COMMAND: memory decoding and bus mastering on (the BARs must be placed first)."""
        command = self.read32(fn, COMMAND) & 0xFFFF
        self.write32(fn, COMMAND, command | COMMAND_MEMORY | COMMAND_BUS_MASTER)

    def enable(self, fn: PciFunction, bar0: int) -> None:
        """Place BAR0 at ``bar0`` and turn on memory decoding and bus mastering."""
        raw = self.read32(fn, BAR0)
        if raw & BAR_IO_SPACE or raw & BAR_TYPE_MASK:
            raise ValueError(f"{fn.bdf}: BAR0 is not a 32-bit memory BAR ({raw:#x})")
        self.write32(fn, BAR0, bar0)
        command = self.read32(fn, COMMAND) & 0xFFFF
        self.write32(fn, COMMAND, command | COMMAND_MEMORY | COMMAND_BUS_MASTER)


def _address(fn: PciFunction | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(fn, PciFunction):
        return fn.bus, fn.device, fn.function
    return fn

"""The firmware QEMU boots when the sandbox uses it as a device model: 64 KiB that halt the CPU.

Why: QEMU's qtest protocol needs a machine, and Debian's QEMU 7.2 ships
without the ``qtest`` accelerator module, so the machine runs under TCG and
its CPU executes whatever the firmware holds.  SeaBIOS would probe PCI and
assign BARs before we do; no guest at all is what the sandbox wants: the
CPU must stop at once and leave every device, and every byte of RAM, to the
project.

An x86 CPU leaves reset in real mode at CS:IP = F000:FFF0, physical
0xFFFFFFF0 (Intel SDM vol. 3A, 9.1.4 "First Instruction Executed"); QEMU's
pc machine maps the last bytes of the BIOS image there (and the last 128 KiB
also below 1 MiB, so offset 0xFFF0 of a 64 KiB image is physical 0xFFFF0).
The reset vector holds ``cli; hlt; jmp $-1`` (rel8 -3, back to the ``hlt``): with interrupts masked the
CPU halts, and should anything (an NMI, SMI) wake it, the jump returns it to
the ``hlt``.  Every other byte is ``hlt`` too, so any stray jump also stops.
"""

from __future__ import annotations

#: Size of the image: QEMU maps a BIOS of 64 KiB at 4 GiB - 64 KiB and its tail below 1 MiB.
FIRMWARE_SIZE = 64 * 1024
#: Offset of the reset vector inside the image (physical 0xFFFFFFF0 = image end - 16).
RESET_VECTOR_OFFSET = FIRMWARE_SIZE - 16

# x86 opcodes (Intel SDM vol. 2)
OP_CLI = 0xFA  # clear IF: maskable interrupts cannot wake the CPU
OP_HLT = 0xF4  # halt until an interrupt
OP_JMP_SHORT = 0xEB  # jmp rel8 (relative to the next instruction)

#: cli; hlt; jmp back to the hlt (rel8 = -3: from after the 2-byte jmp to the hlt one byte before it).
RESET_CODE = bytes((OP_CLI, OP_HLT, OP_JMP_SHORT, (-3) & 0xFF))


def halting_firmware() -> bytes:
    """The 64 KiB image: ``hlt`` everywhere, ``cli; hlt; jmp $-1`` at the reset vector."""
    image = bytearray([OP_HLT]) * FIRMWARE_SIZE
    image[RESET_VECTOR_OFFSET : RESET_VECTOR_OFFSET + len(RESET_CODE)] = RESET_CODE
    return bytes(image)

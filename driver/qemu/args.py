"""The command line that turns qemu-system-x86_64 into a bare device model for the sandbox.

Every flag has a reason, measured on Debian's QEMU 7.2:

- ``-accel tcg``: Debian ships no qtest accelerator module (``-accel qtest``
  fails); TCG with a firmware that halts the CPU (driver/qemu/firmware.py)
  runs no guest code at all.
- guest RAM is ``memory-backend-file`` on ``/proc/self/fd/N``, N being a
  memfd the sandbox created and passed down, ``share=on``: QEMU's e1000 DMAs
  straight into the bytes the sandbox's PhysicalMemory and kernel see, and
  the memory has no name in any file system, so nothing is left behind
  whichever way either process dies.  ``-bios`` is a memfd the same way.
- qtest speaks over one end of a socketpair passed as ``-chardev
  socket,fd=N``.  QEMU 7.2 looks the chardev up by the fixed id ``qtest``
  (softmmu/qtest.c ``qtest_set_chardev``), hence that id; ``-qtest-log
  /dev/null`` keeps it from logging every command.
- ``-device e1000,...,addr=S`` pins each NIC to PCI slot S in order, so the
  probe finds them in the order given; ``-device virtio-net-pci,...,
  disable-legacy=on,disable-modern=off`` makes a modern-only virtio-net
  (PCI ID 1af4:1041, virtio 1.2 §4.1.2.1: no legacy I/O BAR, only the
  capability-described BAR, driver/qemu/virtio_pci.py), ``romfile=`` leaves
  out its option ROM (nothing would run it: the firmware halts); ``-netdev
  dgram,local.type=fd,local.str=N`` joins it to a UDP socket on 127.0.0.1
  the sandbox opened, bound and (when cabled) connected
  (driver/qemu/loopback.py says why); ``-object filter-dump`` writes a pcap of a
  netdev.
- QEMU's option parser splits on ``,`` and ``=``: a path containing either
  breaks it, so such paths are refused here.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driver.qemu.loopback import port_of

QEMU_BINARY = "qemu-system-x86_64"
#: QEMU's device models the sandbox drives (``-device MODEL``)
E1000 = "e1000"
VIRTIO_NET = "virtio-net-pci"
NIC_MODELS = (E1000, VIRTIO_NET)
#: PCI slot of the first NIC (00.0 is the i440FX host bridge, 01.x the PIIX3).
FIRST_NIC_SLOT = 2
MIB = 1 << 20


@dataclass(frozen=True)
class QemuNicSpec:
    """One NIC of the machine: its name, MAC, its end of the cable, an optional pcap and its model.

    ``sock`` is a bound UDP socket (driver/qemu/loopback.py ``cable_socket``),
    connected to the other end when there is one; an unconnected socket is
    an unplugged cable: QEMU's sends fail and the frames are dropped.
    """

    name: str
    mac: bytes
    sock: socket.socket
    pcap: Path | None = None  # filter-dump of this NIC's traffic, both directions
    model: str = E1000  # one of NIC_MODELS

    @property
    def local_port(self) -> int:
        """QEMU receives this NIC's frames on 127.0.0.1:local_port."""
        return port_of(self.sock)

    @property
    def mac_text(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)


def option_path(path: Path | str) -> str:
    """An absolute path safe inside a QEMU option string (no ',' and no '=')."""
    text = str(Path(path).absolute())
    if "," in text or "=" in text:
        raise ValueError(f"QEMU cannot take a path containing ',' or '=': {text}")
    return text


def device_option(nic: QemuNicSpec, netdev: str, slot: int) -> str:
    """The ``-device`` value of one NIC, pinned to PCI slot ``slot`` of bus 0."""
    common = f"netdev={netdev},mac={nic.mac_text},addr={slot:#x}"
    if nic.model == E1000:
        return f"{E1000},{common}"
    if nic.model == VIRTIO_NET:
        return f"{VIRTIO_NET},{common},disable-legacy=on,disable-modern=off,romfile="
    raise ValueError(f"unknown QEMU NIC model {nic.model!r} (one of {', '.join(NIC_MODELS)})")


def qemu_argv(
    binary: str,
    firmware: Path,
    ram_fd: int,
    memory_size: int,
    qtest_fd: int,
    nics: Sequence[QemuNicSpec],
) -> list[str]:
    """The full argument vector (no shell involved); every NIC's socket must be passed down as its fd."""
    if memory_size <= 0 or memory_size % MIB:
        raise ValueError(f"QEMU guest RAM must be a whole number of MiB, got {memory_size}")
    argv = [
        binary,
        "-accel", "tcg",
        "-machine", "pc,memory-backend=ram",
        "-m", f"{memory_size // MIB}M",
        "-object", f"memory-backend-file,id=ram,size={memory_size},mem-path=/proc/self/fd/{ram_fd},share=on",
        "-nographic", "-nodefaults", "-no-user-config", "-display", "none",
        "-bios", option_path(firmware),
        "-chardev", f"socket,id=qtest,fd={qtest_fd}",
        "-qtest", "chardev:qtest",
        "-qtest-log", "/dev/null",
    ]  # fmt: skip
    for i, nic in enumerate(nics):
        netdev = f"n{i}"
        argv += [
            "-netdev",
            f"dgram,id={netdev},local.type=fd,local.str={nic.sock.fileno()}",
            "-device",
            device_option(nic, netdev, FIRST_NIC_SLOT + i),
        ]
        if nic.pcap is not None:
            argv += ["-object", f"filter-dump,id=dump{i},netdev={netdev},file={option_path(nic.pcap)}"]
    return argv

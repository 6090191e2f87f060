"""What the AF_XDP tests need: root, iproute2, AF_XDP sockets and a veth pair in a private namespace.

Outside CI a missing piece skips with one line; under CI=true it fails (tests/needs.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from driver.afxdp.abi import AF_XDP, UMEM_REG_SIZE
from driver.afxdp.socket import RingSizes, UmemConfig, XskSocket
from driver.netns import VethNamespace
from tests.needs import missing, need_root, need_tool
from tests.verifier.test_xdp_rules import descs

__all__ = ["descs"]  # the test tables' XDP_DESC builder, shared with the verifier's tests


def need_afxdp() -> None:
    need_root("AF_XDP on a veth pair in a network namespace")
    need_tool("ip", "iproute2")
    try:
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    except OSError as err:
        missing(f"this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): {err}")


@pytest.fixture
def lab() -> Iterator[VethNamespace]:
    need_afxdp()
    with VethNamespace("test") as made:
        yield made


def open_xsk(
    lab: VethNamespace,
    config: UmemConfig,
    rings: RingSizes | None = None,
    multi_buffer: bool = False,
    umem_reg_size: int = UMEM_REG_SIZE,
) -> XskSocket:
    index = lab.ifindex(lab.port)
    with lab.inside():
        return XskSocket.open(index, config, rings, multi_buffer=multi_buffer, umem_reg_size=umem_reg_size)


def frame(lab: VethNamespace, n: int, length: int = 60) -> bytes:
    """A frame from the AF_XDP end to the peer: EtherType 0x88B5 (IEEE local experimental), numbered."""
    head = lab.peer_mac + lab.port_mac + b"\x88\xb5" + n.to_bytes(4, "big")
    return head + bytes((n + i) & 0xFF for i in range(length - len(head)))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))

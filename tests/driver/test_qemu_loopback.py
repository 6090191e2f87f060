"""The UDP cable QEMU's e1000s use: what a receive queue holds, and what /proc/net/udp says about it."""

from __future__ import annotations

import socket

import pytest

from driver.qemu.loopback import cable_capacity, cable_socket, port_of, rcvbuf_of, udp_backlog, udp_drops

SMALL = 64 << 10


@pytest.mark.parametrize("nbytes", [0, 60, 600, 1000, 1514])
def test_capacity_estimate_never_promises_more_than_the_kernel_holds(nbytes: int) -> None:
    receiver = cable_socket(SMALL)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.connect(receiver.getsockname())
        promised = cable_capacity(rcvbuf_of(receiver), nbytes)
        assert promised > 0
        for _ in range(promised):
            sender.send(bytes(nbytes))
        port = port_of(receiver)
        assert udp_drops([port]) == 0  # everything promised fits
        assert udp_backlog([port]) > 0 or nbytes == 0
        for _ in range(4 * promised + 64):  # far more than fits: the kernel drops, silently for the sender
            sender.send(bytes(nbytes))
        assert udp_drops([port]) > 0
        receiver.setblocking(False)
        held = 0
        with pytest.raises(BlockingIOError):
            while True:
                receiver.recv(65536)
                held += 1
        assert promised <= held < 2 * promised + 2
        assert udp_backlog([port]) == 0
    finally:
        sender.close()
        receiver.close()


def test_no_ports_no_backlog() -> None:
    assert udp_backlog([]) == 0 and udp_drops([]) == 0

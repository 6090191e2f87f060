"""The AF_XDP driver against the real kernel: UMEM, rings, TX to the peer, RX through the XDP program."""

from __future__ import annotations

import errno
import socket
import time

import numpy as np
import pytest

from driver.afxdp.abi import (
    AF_XDP,
    STATISTICS_FIELDS,
    UMEM_REG_V1_SIZE,
    XDP_RING_NEED_WAKEUP,
    XDP_TX_BUDGET_DEFAULT,
    ffi,
)
from driver.afxdp.redirect import XskRedirect
from driver.afxdp.socket import RingSizes, Umem, UmemConfig, XskSocket
from driver.netns import VethNamespace, namespaces, received_frames
from tests.driver.afxdp_env import descs, frame, lab, need_afxdp, open_fds, open_xsk
from tests.needs import missing

__all__ = ["lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.privileged

XDP_PACKET_HEADROOM = 256  # include/uapi/linux/bpf.h: where the frame starts in an aligned RX chunk


def _umem_only(config: UmemConfig, reg_size: int = 32) -> None:
    """Register a UMEM on a bare socket (no rings, no bind): the checks of net/xdp/xdp_umem.c alone."""
    fd = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    sock = XskSocket(fd.detach(), Umem(config.size), config)
    try:
        sock.register_umem(reg_size)
    finally:
        sock.close()


def test_struct_sizes_match_the_uapi_header() -> None:
    assert ffi.sizeof("struct xdp_umem_reg") == 32
    assert ffi.sizeof("struct xdp_umem_reg_v1") == UMEM_REG_V1_SIZE == 24
    assert ffi.sizeof("struct xdp_statistics") == 6 * 8
    assert ffi.sizeof("struct xdp_mmap_offsets") == 4 * 4 * 8
    assert ffi.sizeof("struct sockaddr_xdp") == 16


def test_umem_registration_aligned_and_unaligned() -> None:
    need_afxdp()
    _umem_only(UmemConfig(size=16 * 4096, chunk_size=4096))
    _umem_only(UmemConfig(size=16 * 2048, chunk_size=2048))
    # Unaligned mode accepts a chunk size that is not a power of two and a size that is no multiple of it.
    _umem_only(UmemConfig(size=10 * 3000 + 100, chunk_size=3000, unaligned=True))
    _umem_only(UmemConfig(size=16 * 4096, chunk_size=4096, tx_metadata_len=16))
    with pytest.raises(OSError) as bad:
        _umem_only(UmemConfig(size=10 * 3000, chunk_size=3000))  # aligned: power of two required
    assert bad.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        _umem_only(UmemConfig(size=16 * 4096, chunk_size=1024))  # below XDP_UMEM_MIN_CHUNK_SIZE
    with pytest.raises(OSError):
        _umem_only(UmemConfig(size=16 * 4096, chunk_size=4096, tx_metadata_len=12))  # not a multiple of 8


def test_a_24_byte_umem_reg_silently_drops_the_flags() -> None:
    """xsk_setsockopt reads optlen < 32 as xdp_umem_reg_v1: no flags, so no unaligned mode."""
    need_afxdp()
    unaligned = UmemConfig(size=10 * 3000, chunk_size=3000, unaligned=True)
    _umem_only(unaligned, reg_size=32)
    with pytest.raises(OSError) as short:
        _umem_only(unaligned, reg_size=UMEM_REG_V1_SIZE)  # judged as aligned: 3000 is no power of two
    assert short.value.errno == errno.EINVAL


def test_the_short_struct_changes_what_the_kernel_accepts() -> None:
    """Registration succeeds either way, but only the 32-byte struct gets unaligned chunks."""
    need_afxdp()
    crossing = descs((4000, 200, 0))  # crosses the 4096-byte chunk boundary: only unaligned mode allows it
    verdicts = {}
    for reg_size in (32, UMEM_REG_V1_SIZE):
        config = UmemConfig(size=16 * 4096, chunk_size=4096, unaligned=True)
        with VethNamespace("test") as lab, open_xsk(lab, config, RingSizes(rx=0), umem_reg_size=reg_size) as sock:
            assert sock.tx is not None
            sock.tx.produce(crossing)
            sock.kick()
            verdicts[reg_size] = sock.statistics().tx_invalid_descs
    assert verdicts == {32: 0, UMEM_REG_V1_SIZE: 1}


def test_tx_frames_reach_the_peer_byte_for_byte(lab: VethNamespace) -> None:
    peer = lab.packet_socket(lab.peer)
    with peer, open_xsk(lab, UmemConfig(size=64 * 4096, chunk_size=4096), RingSizes(rx=0)) as sock:
        assert sock.tx is not None and sock.completion is not None
        assert not sock.zerocopy()  # XDP_COPY: the generic path
        frames = [frame(lab, n, length) for n, length in enumerate((60, 61, 128, 1000, 1514))]
        addrs = [n * 4096 + 64 * n for n in range(len(frames))]
        for addr, data in zip(addrs, frames, strict=True):
            sock.umem.write(addr, data)
        sock.tx.produce(descs(*((a, len(f), 0) for a, f in zip(addrs, frames, strict=True))))
        assert sock.tx.flags & XDP_RING_NEED_WAKEUP  # copy mode always wants the kick
        assert sock.kick() == 0
        assert sock.tx.consumer == len(frames)
        assert sorted(int(a) for a in sock.completion.consume()) == addrs
        assert list(received_frames(peer)) == frames
        stats = sock.statistics()
        assert stats.tx_invalid_descs == 0


def test_rx_through_the_xdp_program(lab: VethNamespace) -> None:
    peer = lab.packet_socket(lab.peer)
    config = UmemConfig(size=64 * 2048, chunk_size=2048)
    with peer, open_xsk(lab, config) as sock:
        assert sock.rx is not None and sock.fill is not None
        sock.fill.produce(np.arange(32, dtype=np.uint64) * 2048)
        with XskRedirect.to_socket(lab, lab.port, sock.fd):
            sent = [
                lab.port_mac + lab.peer_mac + b"\x88\xb5" + bytes([n]) * (50 + 100 * n) for n in range(5)
            ]  # peer -> AF_XDP end
            for data in sent:
                peer.send(data)
            assert sock.wait_rx(1000)
            got = sock.rx.consume()
        assert len(got) == len(sent)
        assert [sock.umem.read(int(d["addr"]), int(d["len"])) for d in got] == sent
        # Aligned mode: the frame starts XDP_PACKET_HEADROOM into its chunk.
        assert all(int(d["addr"]) % 2048 == XDP_PACKET_HEADROOM for d in got)
        assert sock.fill.consumer == len(sent)
        assert sock.statistics().rx_dropped == 0


def test_statistics_fields_count_what_happened(lab: VethNamespace) -> None:
    peer = lab.packet_socket(lab.peer)
    config = UmemConfig(size=16 * 4096, chunk_size=4096)
    with peer, open_xsk(lab, config) as sock:
        assert sock.tx is not None and sock.rx is not None
        assert tuple(sock.statistics().as_dict()) == STATISTICS_FIELDS
        sock.tx.produce(descs((0, 0, 0), (4096, 0, 0)))  # len 0: invalid
        sock.kick()
        sock.kick()
        with XskRedirect.to_socket(lab, lab.port, sock.fd):
            peer.send(lab.port_mac + lab.peer_mac + b"\x88\xb5" + bytes(46))  # fill ring is empty
            time.sleep(0.05)
        stats = sock.statistics()
        assert stats.tx_invalid_descs == 2
        assert stats.rx_dropped + stats.rx_fill_ring_empty_descs >= 1
        assert stats.rx_fill_ring_empty_descs >= 1
        assert sock.rx.used() == 0


def test_a_kick_stops_at_the_first_invalid_descriptor(lab: VethNamespace) -> None:
    with open_xsk(lab, UmemConfig(size=16 * 4096, chunk_size=4096), RingSizes(rx=0)) as sock:
        assert sock.tx is not None and sock.completion is not None
        sock.tx.produce(descs((0, 60, 0), (8192, 0, 0), (4096, 60, 0), (4097, 60, 0)))
        sock.kick()
        assert sock.tx.consumer == 2  # the valid one, then the invalid one, released; nothing after it
        assert sock.statistics().tx_invalid_descs == 1
        sock.kick()
        assert sock.tx.consumer == 4
        # Invalid descriptors come back on the completion ring too, with the address unchanged;
        # a transmitted odd address comes back with bit 0 cleared (the skb destructor's tag).
        assert sorted(int(a) for a in sock.completion.consume()) == [0, 4096, 4096, 8192]


def test_tx_budget_per_kick(lab: VethNamespace) -> None:
    with open_xsk(lab, UmemConfig(size=256 * 4096, chunk_size=4096), RingSizes(rx=0)) as sock:
        assert sock.tx is not None
        sock.tx.produce(descs(*((n * 4096, 60, 0) for n in range(200))))
        sock.kick()
        assert sock.tx.consumer == XDP_TX_BUDGET_DEFAULT
        if not sock.set_tx_budget(100):
            missing("this kernel has no XDP_MAX_TX_SKB_BUDGET (Linux 6.17+)")
        sock.kick()
        assert sock.tx.consumer == XDP_TX_BUDGET_DEFAULT + 100
        with pytest.raises(OSError):
            sock.set_tx_budget(16)  # below 32


def test_the_kernel_does_not_bound_the_producer_by_the_ring_size(lab: VethNamespace) -> None:
    """A producer more than one ring ahead of the consumer is taken as it is: slots are read again.

    ``xskq_cons_nb_entries`` (net/xdp/xsk_queue.h) is ``producer - consumer``, never compared with the
    ring's size (an e1000 tail is a slot index: the verifier refuses one outside the ring, RING_TAIL_BEYOND).
    """
    ring = 64
    with open_xsk(lab, UmemConfig(size=ring * 4096, chunk_size=4096), RingSizes(rx=0, tx=ring)) as sock:
        assert sock.tx is not None and sock.completion is not None
        sock.tx.produce(descs(*((n * 4096, 60, 0) for n in range(ring))))  # every slot valid
        sock.tx.producer = 2 * ring + 5  # claims 133 entries in a 64-entry ring
        for _ in range(10):
            sock.kick()
            sock.completion.consume()
        assert sock.tx.consumer == 2 * ring + 5  # every one transmitted, slots 0..4 three times
        assert sock.statistics().tx_invalid_descs == 0


def _xdp_attached(lab: VethNamespace) -> bool:
    return "xdp" in lab.ip("link", "show", lab.port)


def test_cleanup_of_program_link_and_namespace() -> None:
    need_afxdp()
    fds = open_fds()
    with VethNamespace("test") as lab:
        index = lab.ifindex(lab.port)
        with lab.inside(), XskRedirect(index) as redirect:
            assert redirect.link_fd >= 0
            assert _xdp_attached(lab)
        assert not _xdp_attached(lab)  # closing the link fd detached the program
        name = lab.name
    assert name not in namespaces()
    assert open_fds() == fds


def test_cleanup_on_error() -> None:
    need_afxdp()
    fds = open_fds()
    with pytest.raises(OSError), VethNamespace("test") as lab:
        name = lab.name
        with lab.inside():
            XskRedirect(999_999)  # no such interface: map and program are closed again
    assert name not in namespaces()
    with pytest.raises(OSError), VethNamespace("test") as lab:
        name = lab.name
        open_xsk(lab, UmemConfig(size=10 * 3000, chunk_size=3000))  # EINVAL: socket and UMEM released
    assert name not in namespaces()
    assert open_fds() == fds

"""The kernel probe: per-descriptor verdicts of the real AF_XDP TX path (the verifier's ground truth)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from driver.afxdp import probe as afxdp_probe
from driver.afxdp.probe import TxVerdict, kernel_tx_verdicts, probe_tx
from driver.afxdp.socket import UmemConfig
from driver.netns import namespaces
from ring.descriptors import (
    XDP_DESC,
    XDP_PKT_CONTD,
    XDP_TX_METADATA,
    XDP_TXMD_FLAGS_CHECKSUM,
    XDP_TXMD_FLAGS_LAUNCH_TIME,
    XDP_TXMD_FLAGS_TIMESTAMP,
    XSK_TX_METADATA,
    XSK_UNALIGNED_BUF_OFFSET_SHIFT,
)
from tests.driver.afxdp_env import descs, need_afxdp

pytestmark = pytest.mark.privileged

T, D, I, R, P = (  # noqa: E741 - one letter per verdict keeps the tables readable
    TxVerdict.TRANSMITTED,
    TxVerdict.DEVICE_DROPPED,
    TxVerdict.INVALID,
    TxVerdict.REFUSED,
    TxVerdict.PENDING,
)
UMEM = 64 * 4096
CONTD = XDP_PKT_CONTD


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_afxdp()


def test_aligned_mode_rules() -> None:
    rows = (
        (0, 60, 0),  # plain
        (0, 0, 0),  # len 0
        (4096 - 60, 60, 0),  # ends exactly at the chunk end
        (4096 - 59, 60, 0),  # crosses into the next chunk
        (UMEM - 60, 60, 0),  # last bytes of the UMEM
        (UMEM, 60, 0),  # past the end
        (1, 60, 0),  # odd address: fine
        (0, 60, 0x4),  # unknown option bit
        (0, 4, 0),  # shorter than an Ethernet header: valid, the veth drops it
    )
    report = probe_tx(descs(*rows), UmemConfig(UMEM, 4096))
    assert report.verdicts == [T, I, T, I, T, I, T, I, D]
    assert report.peer_frames == report.packets_sent == 4
    assert report.tx_invalid_descs == 4


def test_unaligned_mode_rules() -> None:
    rows = (
        (4096 - 59, 60, 0),  # crosses a chunk boundary: fine here
        (100 | (5 << XSK_UNALIGNED_BUF_OFFSET_SHIFT), 60, 0),  # base 100 + offset 5
        (UMEM - 10, 10, 0),
        (UMEM - 10, 11, 0),  # one byte past the end
        (0, 4096, 0),  # a whole chunk
        (0, 4097, 0),  # longer than a chunk
    )
    assert kernel_tx_verdicts(descs(*rows), UMEM, 4096, True, 0) == [True, True, True, False, True, False]


def test_tx_metadata_len_moves_the_start() -> None:
    config = UmemConfig(UMEM, 4096, tx_metadata_len=32)
    # The metadata sits in front of addr, in the same chunk: (addr - 32) must not wrap below 0 and
    # ((addr - 32) & 4095) + 32 + len must fit the chunk.
    rows = ((32, 60, 0), (16, 60, 0), (4096 + 16, 60, 0), (8192 - 60, 60, 0), (8192 - 59, 60, 0))
    report = probe_tx(descs(*rows), config)
    assert report.verdicts == [T, I, I, T, I]


def test_tx_metadata_option_without_metadata_is_refused_not_invalid() -> None:
    report = probe_tx(descs((64, 60, XDP_TX_METADATA), (0, 60, 0)), UmemConfig(UMEM, 4096))
    assert report.verdicts == [R, T]
    assert report.kick_errno[0] == errno.EINVAL  # from xsk_skb_metadata; the ring would stay stuck
    assert report.skipped_refused == 1


def test_multi_buffer_packets() -> None:
    def packet(n: int) -> list[tuple[int, int, int]]:
        return [(k * 4096, 60, CONTD if k < n - 1 else 0) for k in range(n)]

    rows = [*packet(3), *packet(18), *packet(19)]
    report = probe_tx(descs(*rows), UmemConfig(UMEM, 4096))
    assert report.verdicts == [T] * 3 + [T] * 18 + [I] * 19
    assert report.peer_frames == report.packets_sent == 2
    # An invalid fragment takes the partial packet with it; an unfinished packet stays pending.
    rows2 = [(0, 60, CONTD), (4096, 60, CONTD), (8192, 0, 0), (0, 60, 0), (0, 60, CONTD), (4096, 60, CONTD)]
    assert probe_tx(descs(*rows2), UmemConfig(UMEM, 4096)).verdicts == [I, I, I, T, P, P]
    # ... and the fragments after it, up to the end of its packet; the next packet is fine.
    rows3 = [(0, 60, CONTD), (4096, 0, CONTD), (8192, 60, CONTD), (0, 60, 0), (0, 60, 0)]
    assert probe_tx(descs(*rows3), UmemConfig(UMEM, 4096)).verdicts == [I, I, I, I, T]


def test_a_refused_first_fragment_takes_its_packet_with_it() -> None:
    rows = [(0, 60, XDP_TX_METADATA | CONTD), (4096, 60, CONTD), (8192, 60, 0), (0, 60, 0)]
    report = probe_tx(descs(*rows), UmemConfig(UMEM, 4096))
    assert report.verdicts == [R, I, I, T]


def test_random_stream_is_fully_classified() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    stream = np.zeros(n, XDP_DESC)
    stream["addr"] = rng.integers(0, UMEM + 8192, n)
    stream["len"] = rng.integers(0, 5000, n)
    stream["options"] = rng.choice([0, 0, 0, CONTD, XDP_TX_METADATA, 4], n)
    report = probe_tx(stream, UmemConfig(UMEM, 4096))
    assert len(report.verdicts) == n
    assert report.peer_frames == report.packets_sent
    counted = sum(v is I for v in report.verdicts) + report.skipped_refused
    assert counted == report.tx_invalid_descs  # every INVALID verdict is one count of the kernel's
    assert {T, I, R} <= set(report.verdicts)


def test_bad_geometry_raises_and_cleans_up() -> None:
    def ours() -> list[str]:  # other test runs may be probing at the same time
        return [n for n in namespaces() if f"-{os.getpid()}-" in n]

    before = ours()
    with pytest.raises(OSError):
        kernel_tx_verdicts(descs((0, 60, 0)), 10 * 3000, 3000, False, 0)
    assert ours() == before


# -- struct xsk_tx_metadata in front of the buffer (net/xdp/xsk.c xsk_skb_metadata) ---------------------

TS, CS, LT = XDP_TXMD_FLAGS_TIMESTAMP, XDP_TXMD_FLAGS_CHECKSUM, XDP_TXMD_FLAGS_LAUNCH_TIME
M = XDP_TX_METADATA


def metas(*rows: tuple[int, int, int, int]) -> np.ndarray:
    return np.array(list(rows), dtype=XSK_TX_METADATA)


def test_metadata_is_written_before_each_descriptor_and_judged() -> None:
    """Every descriptor's metadata area is the same 32 bytes: the probe rewrites them before each one."""
    config = UmemConfig(UMEM, 4096, tx_metadata_len=32)
    rows = [(4096 + 32, 60, M)] * 9 + [(4096 + 32, 60, 0), (8192 + 32, 60, M | CONTD), (12288 + 32, 60, M)]
    meta = metas(
        (0, 0, 0, 0),
        (TS | CS, 50, 8, 0),  # 50 + 8 + sizeof(__sum16) == len
        (CS, 50, 9, 0),  # one byte beyond
        (CS, 0xFFFF, 0xFFFF, 0),  # no wrap
        (1 << 3, 0, 0, 0),  # the first unknown flag
        (1 << 63, 0, 0, 0),
        (LT, 0, 0, 1 << 62),  # launch_time inside a 32-byte area
        (TS, 0, 0, 0),  # the timestamp the kernel writes back for it does not leak into the next one
        (0, 0xFFFF, 0xFFFF, 0),  # checksum fields without the flag: not looked at
        (1 << 3, 0, 0, 0),  # no XDP_TX_METADATA: not read
        (CS, 59, 2, 0),  # first of a packet: held to its own len (60), not the packet's
        (1 << 3, 0, 0, 0),  # a later fragment's metadata is not read
    )
    report = probe_tx(descs(*rows), config, meta=meta)
    assert report.verdicts == [T, T, R, R, R, R, T, T, T, T, R, I], report.kick_errno
    assert [report.kick_errno[i] for i in (2, 3, 4, 5)] == [errno.EINVAL] * 4  # refused, not counted invalid


def test_launch_time_beyond_a_short_area_follows_the_probe() -> None:
    """Where launch_time (bytes 16..23) lies outside a 16-byte area, kernels differ: the probe's answer is the rule."""
    smallest = afxdp_probe.smallest_tx_metadata_len()
    if smallest > 16:
        pytest.skip(f"this kernel registers no 16-byte metadata area (smallest {smallest})")
    report = probe_tx(descs((16, 60, M)), UmemConfig(UMEM, 4096, tx_metadata_len=16), meta=metas((LT, 0, 0, 5)))
    assert report.verdicts == [R if afxdp_probe.launch_time_needs_room() else T]


def test_the_umem_image_is_the_umem() -> None:
    image = np.zeros(UMEM, np.uint8)
    image[4096 : 4096 + 24] = metas((1 << 9, 0, 0, 0)).view(np.uint8)
    config = UmemConfig(UMEM, 4096, tx_metadata_len=24)
    rows = descs((4096 + 24, 60, M), (8192 + 24, 60, M))
    assert probe_tx(rows, config, umem_image=image).verdicts == [R, T]
    with pytest.raises(ValueError, match="umem_image"):
        probe_tx(rows, config, umem_image=image[:-1])
    with pytest.raises(ValueError, match="meta"):
        probe_tx(rows, config, meta=metas((0, 0, 0, 0)))


def test_the_tx_metadata_len_probe_is_asked_once() -> None:
    afxdp_probe.smallest_tx_metadata_len.cache_clear()
    first = afxdp_probe.smallest_tx_metadata_len()
    assert 8 <= first <= 248 and first % 8 == 0
    assert afxdp_probe.smallest_tx_metadata_len() == first
    assert afxdp_probe.smallest_tx_metadata_len.cache_info().hits >= 1
    assert afxdp_probe._registers(first) and (first == 8 or not afxdp_probe._registers(first - 8))

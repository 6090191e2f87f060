"""Ask the real kernel which AF_XDP TX descriptors it accepts: the verifier's ground truth.

:func:`probe_tx` (and its boolean digest :func:`kernel_tx_verdicts`) opens a
fresh AF_XDP socket on one end of a veth pair inside a private namespace
(``driver.netns.VethNamespace``), registers a UMEM with the given geometry, and submits the
descriptors **one per kick**, in input order.  After each kick it reads how far
the kernel's TX consumer moved and how much ``XDP_STATISTICS.tx_invalid_descs``
grew.  One descriptor per kick makes the attribution exact without relying on
the batching details (a kick stops at the first invalid descriptor; the budget
is 32 per kick, net/xdp/xsk.c ``__xsk_generic_xmit``), and costs about 20 us a
descriptor, so 10,000 descriptors take well under a second.

The kernel's rules being measured are in net/xdp/xsk_queue.h
(``xp_aligned_validate_desc``, ``xp_unaligned_validate_desc``,
``xp_unused_options_set``, ``xskq_cons_is_valid_desc``), for multi-buffer
packets net/xdp/xsk.c (``xsk_build_skb``, ``xsk_drop_skb``), and for the
``struct xsk_tx_metadata`` in front of a buffer ``xsk_skb_metadata``: given
``meta``, the probe writes each descriptor's metadata into the real UMEM just
before that descriptor is posted.

Two registration facts that differ between kernels are probed on their own,
once per process (:func:`smallest_tx_metadata_len`,
:func:`launch_time_needs_room`).
"""

from __future__ import annotations

import enum
import errno
import functools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from driver.afxdp.abi import AF_XDP, SOCK_RAW, check, libc
from driver.afxdp.rings import U32
from driver.afxdp.socket import RingSizes, Umem, UmemConfig, XskSocket
from driver.netns import VETH_MAX_MTU, VethNamespace, received_frames
from ring.descriptors import (
    XDP_DESC,
    XDP_PKT_CONTD,
    XDP_TX_METADATA,
    XDP_TXMD_FLAGS_LAUNCH_TIME,
    XSK_TX_METADATA,
    XSK_UNALIGNED_BUF_ADDR_MASK,
    XSK_UNALIGNED_BUF_OFFSET_SHIFT,
)

# Without ``umem_image`` the UMEM starts all zero (fresh anonymous memory): frames start with dst
# MAC 00:00:00:00:00:00 and EtherType 0, so the peer's stack drops them while its packet socket
# still counts them, and without ``meta`` any ``struct xsk_tx_metadata`` in front of a descriptor
# reads as flags = 0, i.e. valid (net/xdp/xsk.c ``xsk_skb_metadata``).

#: Receive buffer of the peer's packet socket (SO_RCVBUFFORCE): room for every frame sent between drains.
PEER_RCVBUF = 64 << 20
PROBE_RING = 4096  # TX and completion ring entries; the probe keeps at most one in flight
RETRIES = 50  # kicks that consumed nothing and returned EAGAIN before the descriptor counts as refused
#: Descriptors judged between two drains of the peer's socket and two progress reports.
DRAIN_EVERY = 256
#: ``struct xsk_tx_metadata``'s bytes the kernel checks: flags, csum_start, csum_offset (written even
#: where they reach into the frame, as they do when tx_metadata_len is 8 on kernels that allow it).
CHECKED_META_BYTES = 12


class ProbeError(OSError):
    """The kernel did something the probe cannot classify (a one-line message, like every OSError here)."""


class TxVerdict(enum.Enum):
    """What the kernel did with one TX descriptor."""

    #: consumed, not counted invalid, its packet handed to the device (kick returned 0)
    TRANSMITTED = "transmitted"
    #: consumed and valid, but the device refused the frame (kick returned EBUSY, NET_XMIT_DROP),
    #: e.g. a frame shorter than an Ethernet header; the descriptor checks passed
    DEVICE_DROPPED = "device_dropped"
    #: counted in tx_invalid_descs: the descriptor itself failed the checks, or it was a fragment
    #: of a multi-buffer packet that the kernel dropped whole (xsk_drop_skb)
    INVALID = "invalid"
    #: passed the checks (not counted invalid) but never consumed: the kick failed with an errno
    #: other than EAGAIN (e.g. EINVAL for XDP_TX_METADATA without valid metadata, ENOBUFS for an
    #: skb too large to allocate).  It would block the ring forever; the probe rewrites it to len 0
    #: (keeping XDP_PKT_CONTD), so the kernel drops it, and the rest of its packet, as invalid.
    REFUSED = "refused"
    #: a valid XDP_PKT_CONTD fragment whose packet was not finished when the input ended:
    #: the kernel holds it in xs->skb, nothing is sent
    PENDING = "pending"


ACCEPTED = frozenset({TxVerdict.TRANSMITTED, TxVerdict.DEVICE_DROPPED})


@dataclass
class TxProbeReport:
    """Per-descriptor verdicts plus the kernel's own counters, for the record."""

    verdicts: list[TxVerdict]
    kick_errno: list[int]  # errno of the kick that consumed (or refused) each descriptor, 0 if none
    completions: list[int]  # every address the completion rings returned, in order
    tx_invalid_descs: int  # the kernel's counter at the end (REFUSED skips included)
    skipped_refused: int  # REFUSED descriptors overwritten with len 0 to get them off the ring
    peer_frames: int  # frames the peer end of the veth saw
    packets_sent: int  # packets whose kick returned 0 (should equal peer_frames)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[bool]:
        return [v in ACCEPTED for v in self.verdicts]


def kernel_tx_verdicts(
    descs: np.ndarray,
    umem_size: int,
    chunk_size: int,
    unaligned: bool,
    tx_metadata_len: int,
    multi_buffer: bool = True,
    progress: Callable[[int], None] | None = None,
    meta: np.ndarray | None = None,
    umem_image: np.ndarray | None = None,
) -> list[bool]:
    """For each ``XDP_DESC`` in order: did the Linux kernel accept it for transmission?

    Contract (read by the verifier's ``--against kernel``):

    - ``descs``: a numpy array of ``ring.descriptors.XDP_DESC`` (addr u64, len u32,
      options u32), UMEM-relative addresses exactly as a TX ring would carry them
      (unaligned mode: offset in the top 16 bits).  Judged in input order, as one
      stream on one socket, so multi-buffer packets (``XDP_PKT_CONTD`` on every
      fragment but the last) may span consecutive entries.
    - The UMEM is ``umem_size`` bytes of page-aligned memory registered with the
      32-byte ``xdp_umem_reg``: ``chunk_size``, headroom 0,
      ``XDP_UMEM_UNALIGNED_CHUNK_FLAG`` if ``unaligned``, and ``tx_metadata_len``
      with ``XDP_UMEM_TX_METADATA_LEN`` if it is non-zero.  Registration errors
      (the kernel's ``xdp_umem_reg`` rules: chunk 2048..4096, a power of two when
      aligned, size a multiple of the chunk when aligned, metadata < 256 and a
      multiple of 8, and on some kernels at least 16) raise ``OSError`` (EINVAL)
      before any descriptor is judged.
    - ``umem_image`` (``umem_size`` bytes, uint8): the UMEM's contents before the
      first descriptor; default all zero.
    - ``meta``: one ``ring.descriptors.XSK_TX_METADATA`` per descriptor.  With a
      metadata area, each record is written at the descriptor's buffer start
      minus ``tx_metadata_len`` (its first ``max(12, min(24, tx_metadata_len))``
      bytes, when they all lie in the UMEM) just before the descriptor is posted, so the
      kernel's ``xsk_skb_metadata`` reads exactly it, whatever earlier
      descriptors' records or completion timestamps left there.  Default: the
      UMEM's bytes as they are.
    - ``multi_buffer`` binds with ``XDP_USE_SG`` (default).  Copy mode chains
      ``XDP_PKT_CONTD`` fragments into one packet either way (measured, 6.18).
    - Returns ``True`` for :data:`ACCEPTED` verdicts (TRANSMITTED, DEVICE_DROPPED:
      the kernel's checks passed and it built the frame), ``False`` for INVALID
      (the descriptor failed the checks, or belonged to a packet dropped whole:
      an invalid or refused fragment drops the fragments before it and the ones
      after it up to the end of its packet; so do more than 18 fragments),
      REFUSED (passed the checks, but the kick fails and the kernel would leave it
      on the ring for ever; the probe rewrites it to ``len = 0``, keeping
      ``XDP_PKT_CONTD``, so the kernel drops it with its packet and goes on) and
      PENDING (a valid fragment of a packet still unfinished at the end of the
      input).  :func:`probe_tx` gives the five-way verdicts and the counters.
    - Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns) and AF_XDP in the kernel;
      raises ``OSError`` (``driver.netns.NetnsError`` among them) otherwise, and
      :class:`ProbeError` (an ``OSError`` too) should the kernel not release a
      rewritten descriptor.  Cleans up its namespace,
      veth pair and sockets on return and on error.  About 20 us a descriptor;
      ``progress`` is called with the number of descriptors judged so far.
    """
    config = UmemConfig(umem_size, chunk_size, 0, unaligned, tx_metadata_len)
    report = probe_tx(descs, config, multi_buffer, progress, meta, umem_image)
    return report.accepted


def probe_tx(
    descs: np.ndarray,
    config: UmemConfig,
    multi_buffer: bool = True,
    progress: Callable[[int], None] | None = None,
    meta: np.ndarray | None = None,
    umem_image: np.ndarray | None = None,
) -> TxProbeReport:
    """Submit ``descs`` one per kick and classify each (see :class:`TxVerdict`); ``meta``, ``umem_image``: above."""
    descs = np.ascontiguousarray(descs, dtype=XDP_DESC)
    if meta is not None and (meta.dtype != XSK_TX_METADATA or meta.shape != descs.shape):
        raise ValueError(f"meta must hold one XSK_TX_METADATA per descriptor, got {meta.dtype} {meta.shape}")
    if umem_image is not None and (umem_image.dtype != np.uint8 or umem_image.shape != (config.size,)):
        raise ValueError(f"umem_image must be {config.size} bytes, got {umem_image.dtype} {umem_image.shape}")
    start = time.perf_counter()
    with VethNamespace("probe", mtu=VETH_MAX_MTU) as lab, lab.packet_socket(lab.peer, PEER_RCVBUF) as peer:
        prober = _Prober(lab, config, multi_buffer, peer)
        try:
            if umem_image is not None:
                prober.sock.umem.mem[:] = umem_image
            report = prober.run(descs, progress, meta)
        finally:
            prober.close()
    report.seconds = time.perf_counter() - start
    return report


def _registers(tx_metadata_len: int) -> bool:
    """Does ``XDP_UMEM_REG`` with ``XDP_UMEM_TX_METADATA_LEN`` and this length succeed (a one-page UMEM)?"""
    config = UmemConfig(4096, 2048, tx_metadata_len=tx_metadata_len)
    fd = check(libc.socket(AF_XDP, SOCK_RAW, 0), "socket(AF_XDP)")
    sock = XskSocket(fd, Umem(config.size), config)
    try:
        sock.register_umem()
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False
        raise
    finally:
        sock.close()
    return True


@functools.cache
def smallest_tx_metadata_len() -> int:
    """The smallest ``tx_metadata_len`` (8, 16, ... 248) this kernel registers with ``XDP_UMEM_TX_METADATA_LEN``.

    The published ``xdp_umem_reg`` (net/xdp/xdp_umem.c, 6.8 to 6.18) has no
    lower bound: 8.  Linux 6.18.44 as measured: 16.  Asked once per process (a
    socket and a one-page UMEM per length tried; no namespace).  Raises
    ``OSError`` without AF_XDP or the privilege to open it, :class:`ProbeError`
    if no length registers.
    """
    for length in range(8, 256, 8):
        if _registers(length):
            return length
    raise ProbeError("no tx_metadata_len from 8 to 248 registers with XDP_UMEM_TX_METADATA_LEN")


@functools.cache
def launch_time_needs_room() -> bool:
    """Does this kernel refuse ``XDP_TXMD_FLAGS_LAUNCH_TIME`` when ``launch_time`` lies beyond ``tx_metadata_len``?

    ``request.launch_time`` is bytes 16..23 of ``struct xsk_tx_metadata``.  The
    published ``xsk_skb_metadata`` (net/xdp/xsk.c, 6.18) reads it wherever it
    lies; Linux 6.18.44 as measured refuses the descriptor (-EINVAL) when the
    area is shorter than 24 bytes.  Sends one descriptor through a socket whose
    area is the smallest this kernel registers (False, moot, when that is 24 or
    more).  Asked once per process; needs what :func:`probe_tx` needs.
    """
    length = smallest_tx_metadata_len()
    if length >= XSK_TX_METADATA.itemsize:
        return False
    meta = np.zeros(1, XSK_TX_METADATA)
    meta["flags"] = XDP_TXMD_FLAGS_LAUNCH_TIME
    one = np.array([(length, 60, XDP_TX_METADATA)], XDP_DESC)  # the metadata area starts the UMEM
    report = probe_tx(one, UmemConfig(8192, 4096, 0, False, length), meta=meta)
    if report.verdicts[0] is TxVerdict.INVALID:
        raise ProbeError(f"the launch_time probe's descriptor was invalid (tx_metadata_len {length})")
    return report.verdicts[0] is TxVerdict.REFUSED


class _Prober:
    """One socket, one descriptor per kick; keeps the bookkeeping of the packet being built."""

    def __init__(self, lab: VethNamespace, config: UmemConfig, multi_buffer: bool, peer: socket.socket):
        self.multi_buffer = multi_buffer
        self.peer = peer
        self.peer_frames = 0
        self.completions: list[int] = []
        self.skipped = 0
        self.notes: list[str] = []
        ifindex = lab.ifindex(lab.port)
        with lab.inside():
            self.sock = XskSocket.open(
                ifindex,
                config,
                RingSizes(fill=PROBE_RING, completion=PROBE_RING, rx=0, tx=PROBE_RING),
                multi_buffer=multi_buffer,
            )

    def _drain_peer(self) -> None:
        self.peer_frames += sum(1 for _ in received_frames(self.peer))

    def _submit(self, desc: np.ndarray) -> tuple[int, int]:
        """Post one descriptor and kick until the kernel consumes it or says why not: (consumed, errno)."""
        sock = self.sock
        assert sock.tx is not None and sock.completion is not None
        sock.tx.produce(desc)
        consumed, err = 0, 0
        for _ in range(RETRIES):
            before = sock.tx.consumer
            err = sock.kick()
            consumed = (sock.tx.consumer - before) & U32
            self.completions.extend(int(a) for a in sock.completion.consume())
            if consumed or err != errno.EAGAIN:
                break
            self._drain_peer()
        return consumed, err

    def _write_meta(self, desc: np.ndarray, record: np.ndarray) -> None:
        """Put ``record`` (one XSK_TX_METADATA) where the kernel will look for ``desc``'s metadata."""
        length = self.sock.config.tx_metadata_len
        addr = int(desc["addr"])
        if self.sock.config.unaligned:
            addr = (addr & XSK_UNALIGNED_BUF_ADDR_MASK) + (addr >> XSK_UNALIGNED_BUF_OFFSET_SHIFT)
        base = addr - length
        raw = np.frombuffer(record.tobytes(), np.uint8)[
            : max(CHECKED_META_BYTES, min(XSK_TX_METADATA.itemsize, length))
        ]
        mem = self.sock.umem.mem
        if base >= 0 and base + len(raw) <= len(mem):  # else the kernel refuses the descriptor before reading
            mem[base : base + len(raw)] = raw

    def run(
        self, descs: np.ndarray, progress: Callable[[int], None] | None, meta: np.ndarray | None = None
    ) -> TxProbeReport:
        n = len(descs)
        write_meta = meta is not None and self.sock.config.tx_metadata_len > 0
        verdicts: list[TxVerdict] = [TxVerdict.PENDING] * n
        kick_errno = [0] * n
        pending: list[int] = []  # consumed, valid CONTD fragments of the packet being built
        packets_sent = 0
        invalid = self.sock.tx_invalid_descs()
        for i in range(n):
            if write_meta:
                assert meta is not None
                self._write_meta(descs[i], meta[i])
            consumed, kick_errno[i] = self._submit(descs[i : i + 1])
            now = self.sock.tx_invalid_descs()
            grew, invalid = now - invalid, now
            if not consumed:
                verdicts[i] = TxVerdict.REFUSED
                for j in pending:  # the skip below drops the partial packet, counted invalid
                    verdicts[j] = TxVerdict.INVALID
                pending = []
                invalid = self._skip_refused()
                continue
            group = [*pending, i]
            if grew:
                # The kernel counted this descriptor, and with it the partial packet, invalid.
                for j in group[-grew:]:
                    verdicts[j] = TxVerdict.INVALID
                pending = group[: max(0, len(group) - grew)]
            elif int(descs[i]["options"]) & XDP_PKT_CONTD:
                # Copy mode chains CONTD fragments whether or not the socket was bound with
                # XDP_USE_SG (measured on 6.18: __xsk_generic_xmit does not look at xs->sg).
                pending = group
            else:
                verdict = TxVerdict.TRANSMITTED if kick_errno[i] == 0 else TxVerdict.DEVICE_DROPPED
                packets_sent += verdict is TxVerdict.TRANSMITTED
                for j in group:
                    verdicts[j] = verdict
                pending = []
            if i % DRAIN_EVERY == DRAIN_EVERY - 1:
                self._drain_peer()
                if progress:
                    progress(i + 1)
        self._drain_peer()
        if progress:
            progress(n)
        return TxProbeReport(
            verdicts=verdicts,
            kick_errno=kick_errno,
            completions=self.completions,
            tx_invalid_descs=invalid,
            skipped_refused=self.skipped,
            peer_frames=self.peer_frames,
            packets_sent=packets_sent,
            notes=self.notes,
        )

    def _skip_refused(self) -> int:
        """Get a refused descriptor off the head of the TX ring without a new socket.

        The kernel re-reads the descriptor from the shared ring at every kick
        (xsk_queue.h ``xskq_cons_read_desc``), so overwriting the stuck slot with
        ``len = 0`` (always invalid) makes the next kick count it invalid and
        release it.  ``XDP_PKT_CONTD`` is kept: the kernel then treats it as an
        invalid fragment and drops the rest of its packet too (measured: every
        later fragment up to the end of the packet is counted invalid), which is
        "refuse it, with its packet, and go on".  Returns the new
        ``tx_invalid_descs`` baseline.
        """
        sock = self.sock
        assert sock.tx is not None and sock.completion is not None
        slot = (sock.tx.producer - 1) & (sock.tx.size - 1)
        sock.tx.entries[slot]["len"] = 0
        sock.tx.entries[slot]["options"] &= XDP_PKT_CONTD
        before = sock.tx.consumer
        err = sock.kick()
        self.completions.extend(int(a) for a in sock.completion.consume())
        if sock.tx.consumer == before:
            raise ProbeError(f"the kernel did not release a len=0 descriptor (kick errno {err})")
        self.skipped += 1
        return sock.tx_invalid_descs()

    def close(self) -> None:
        self.sock.close()

"""``nic-sandbox demo afxdp``: numbered frames through the real kernel's AF_XDP rings, both ways.

The same user-space ring protocol the emulated NIC speaks, against Linux
itself: a private namespace holds a veth pair (198.18.1.1/30 <-> .2/30).  An
AF_XDP socket in copy mode is bound to one end; the other end is "the peer", a
plain ``AF_PACKET`` socket.

- TX: sequence-numbered Ether/IPv4/UDP frames (``world.traffic.UdpFlow``,
  built with scapy) are written into UMEM chunks, posted on the TX ring, and
  the kernel is kicked with ``sendto``; chunks come back on the completion ring.
  The peer receives every frame and checks it byte for byte.
- RX: the peer sends numbered frames back; the hand-assembled XDP program
  (``driver.afxdp.bpf.xsk_redirect_program``, generic mode) redirects them into the
  socket's RX ring, filled from the fill ring; each is checked byte for byte
  in the UMEM and its chunk goes back to the fill ring.

At the end the kernel's own ``XDP_STATISTICS`` and the four rings' producer and
consumer counters are printed.  Everything (namespace, pair, program, link,
map, sockets) is gone when the command returns, also on error or Ctrl-C.
"""

from __future__ import annotations

import collections
import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from driver.afxdp.abi import XDP_TX_BUDGET_DEFAULT
from driver.afxdp.redirect import XskRedirect
from driver.afxdp.socket import RingSizes, UmemConfig, XskSocket
from driver.netns import VethNamespace, received_frames
from ring.descriptors import XDP_DESC
from ring.frames import FrameBatch
from sandbox.demos import pingpong
from world.traffic import UdpFlow

CHUNK = 2048  # 1514-byte frames + XDP_PACKET_HEADROOM (256) fit in one aligned chunk
RING = 2048  # entries in each of the four rings
PEER_RCVBUF = 32 << 20
RX_TIMEOUT_S = 2.0
RX_POLL_MS = 50  # one poll(2) for stragglers while RX_TIMEOUT_S runs

#: Called with a direction ("tx", "rx") and the frames received so far.
ProgressSink = Callable[[str, int], None]


@dataclass
class Direction(pingpong.Direction):
    """One direction's outcome, judged as the pingpong demo judges it, and timed.

    ``pingpong.Direction`` compares every frame byte for byte with what its
    sequence number says it must be and counts corrupt, duplicate, reordered
    and lost frames; ``space`` and ``expected`` are both the frames sent.
    """

    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return self.expected

    @property
    def frames_per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def check_frames(self, frames: list[bytes], flow: UdpFlow) -> None:
        """Judge what arrived; a frame of another length is corrupt on its own, not with its whole burst."""
        right = [f for f in frames if len(f) == flow.frame_len]
        wrong = len(frames) - len(right)
        self.received += wrong
        self.corrupt += wrong
        if right:
            self.check(FrameBatch.from_frames(right), flow.expected)

    def as_dict(self) -> dict[str, int | str]:
        return {**super().as_dict(), "sent": self.sent, "frames_per_second": round(self.frames_per_second)}


@dataclass
class AfxdpReport:
    namespace: str
    port: str
    peer: str
    frame_size: int
    batch: int
    tx: Direction
    rx: Direction
    statistics: dict[str, int]
    rings: dict[str, dict[str, int]]
    kicks: int
    tx_budget: int
    zerocopy: bool
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return all(d.lost == 0 and d.corrupt == 0 and d.duplicates == 0 for d in (self.tx, self.rx))


def run(count: int, size: int, batch: int, progress: ProgressSink | None = None) -> AfxdpReport:
    """Build the namespace, send ``count`` frames each way, tear everything down, return the report.

    The namespace traps SIGTERM and SIGHUP while it exists (``driver.netns``), so
    they unwind through every ``with`` here, as Ctrl-C does.
    """
    with VethNamespace("demo") as lab, lab.packet_socket(lab.peer, PEER_RCVBUF) as peer:
        ifindex = lab.ifindex(lab.port)
        with lab.inside():
            sock = XskSocket.open(ifindex, UmemConfig(size=2 * RING * CHUNK, chunk_size=CHUNK), RingSizes())
        with sock, XskRedirect.to_socket(lab, lab.port, sock.fd):
            return _Exchange(sock, peer, count, batch, progress).run(lab, size)


@dataclass
class _Exchange:
    """One AF_XDP socket and the peer's packet socket, ``count`` frames each way in bursts of ``batch``."""

    sock: XskSocket
    peer: socket.socket
    count: int
    batch: int
    progress: ProgressSink | None

    def run(self, lab: VethNamespace, size: int) -> AfxdpReport:
        sock = self.sock
        out_flow = UdpFlow(lab.port_mac, lab.peer_mac, lab.port_ip, lab.peer_ip, size, seed=1)
        back_flow = UdpFlow(lab.peer_mac, lab.port_mac, lab.peer_ip, lab.port_ip, size, seed=2, sport=9001, dport=9000)
        budget = max(XDP_TX_BUDGET_DEFAULT, min(self.batch, RING))
        notes: list[str] = []
        if budget != XDP_TX_BUDGET_DEFAULT and not sock.set_tx_budget(budget):
            notes.append("this kernel has no XDP_MAX_TX_SKB_BUDGET: 32 descriptors per kick")
            budget = XDP_TX_BUDGET_DEFAULT
        tx = self.transmit(out_flow)
        rx = self.receive(back_flow)
        return AfxdpReport(
            namespace=lab.name,
            port=lab.port,
            peer=lab.peer,
            frame_size=size,
            batch=self.batch,
            tx=tx,
            rx=rx,
            statistics=sock.statistics().as_dict(),
            rings=sock.ring_counters(),
            kicks=sock.kicks,
            tx_budget=budget,
            zerocopy=sock.zerocopy(),
            notes=notes,
        )

    def transmit(self, flow: UdpFlow) -> Direction:
        """TX ring -> kernel -> veth -> peer's packet socket."""
        sock, count = self.sock, self.count
        assert sock.tx is not None and sock.completion is not None
        d = Direction("xsk → peer (TX ring)", space=count, expected=count)
        free = collections.deque(range(0, RING * CHUNK, CHUNK))  # the first half of the UMEM is for TX
        chunks = sock.umem.mem.reshape(-1, CHUNK)
        start = time.perf_counter()
        seq = 0
        while seq < count or sock.tx.used():
            n = min(self.batch, count - seq, len(free), sock.tx.free())
            if n:
                addrs = np.array([free.popleft() for _ in range(n)], dtype=np.uint64)
                chunks[addrs // CHUNK, : flow.frame_len] = flow.expected(np.arange(seq, seq + n, dtype=np.uint64))
                descs = np.zeros(n, XDP_DESC)
                descs["addr"] = addrs
                descs["len"] = flow.frame_len
                sock.tx.produce(descs)
                seq += n
            err = sock.kick()
            if err not in (0, errno.EAGAIN):
                raise OSError(err, f"AF_XDP kick failed (errno {err})")
            free.extend(int(a) for a in sock.completion.consume())
            self._report("tx", self._drain_peer(d, flow))
        self._finish(d, start, lambda: self._drain_peer(d, flow))
        return d

    def receive(self, flow: UdpFlow) -> Direction:
        """Peer's packet socket -> veth -> XDP program -> XSKMAP -> RX ring."""
        sock, count = self.sock, self.count
        assert sock.rx is not None and sock.fill is not None
        d = Direction("peer → xsk (RX ring)", space=count, expected=count)
        sock.fill.produce(np.arange(RING, 2 * RING, dtype=np.uint64) * CHUNK)  # the second half is for RX
        start = time.perf_counter()
        seq = 0
        while seq < count:
            n = min(self.batch, count - seq, sock.fill.used())
            for row in flow.expected(np.arange(seq, seq + n, dtype=np.uint64)):
                self.peer.send(row.tobytes())
            seq += n
            self._report("rx", self._reap_rx(d, flow))

        def collect() -> None:
            if sock.wait_rx(RX_POLL_MS):
                self._reap_rx(d, flow)

        self._finish(d, start, collect)
        return d

    def _drain_peer(self, d: Direction, flow: UdpFlow) -> int:
        """Judge every frame the peer's packet socket has waiting; the frames received so far."""
        d.check_frames(list(received_frames(self.peer)), flow)
        return d.received

    def _reap_rx(self, d: Direction, flow: UdpFlow) -> int:
        """Judge what the RX ring holds, give the chunks back to the fill ring; the frames received so far."""
        sock = self.sock
        assert sock.rx is not None and sock.fill is not None
        descs = sock.rx.consume()
        places = zip(descs["addr"].tolist(), descs["len"].tolist(), strict=True)
        d.check_frames([sock.umem.read(addr, length) for addr, length in places], flow)
        if len(descs):
            # Aligned mode: any address inside a chunk names the chunk (the kernel masks it).
            sock.fill.produce(descs["addr"] & ~np.uint64(CHUNK - 1))
        return d.received

    def _report(self, direction: str, received: int) -> None:
        if self.progress:
            self.progress(direction, received)

    @staticmethod
    def _finish(d: Direction, start: float, collect: Callable[[], object]) -> None:
        """Collect stragglers until every frame is in or RX_TIMEOUT_S passes, then stop the clock."""
        deadline = time.perf_counter() + RX_TIMEOUT_S
        while d.received < d.sent and time.perf_counter() < deadline:
            collect()
        d.seconds = time.perf_counter() - start

"""A tenant that answers ARP and ICMP echo entirely in user space, through its own rings.

What a host's stack would do for ``ping``, done by the tenant instead: it
polls its RX ring (``rx_burst``), parses each frame with scapy, builds the
answer with scapy and sends it through its TX ring (``tx_burst``).  The
kernel's verifier sees every descriptor, as for any other tenant.

Rules modelled:

- ARP (RFC 826, "Packet Reception"): a request (``ar$op`` = 1) for our
  protocol address, Ethernet/IPv4 only, is answered with a reply
  (``ar$op`` = 2) that carries our hardware address as sender and the
  requester as target, sent unicast to the requester.
- ICMP echo (RFC 792; RFC 1122 3.2.2.6): an echo request (type 8, code 0)
  to our address gets an echo reply (type 0) with the same identifier,
  sequence number and data; "the data received in the ICMP Echo Request
  MUST be entirely included in the Echo Reply".
- Receive checks as Linux makes them: an IPv4 header whose checksum does
  not verify or whose total length exceeds the frame is dropped
  (net/ipv4/ip_input.c ``ip_rcv_core``); an ICMP message whose checksum
  does not verify is dropped (net/ipv4/icmp.c ``icmp_rcv``); fragments are
  not reassembled here, so they are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import checksum

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring.frames import FrameBatch
from ring.syscalls import Syscalls
from world.traffic import ETH_HLEN

#: RFC 826 ``ar$op`` values and the hardware/protocol types of Ethernet and IPv4.
ARP_REQUEST, ARP_REPLY = 1, 2
ARP_HW_ETHERNET, ETHERTYPE_IPV4 = 1, 0x0800
#: RFC 792 ICMP types; echo messages have code 0.
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
ICMP_HLEN = 8  # type, code, checksum, identifier, sequence number
IPV4_MIN_IHL = 5  # header length in 32-bit words without options
#: IPv4 flags/fragment offset: More Fragments and the offset bits (RFC 791 3.1).
IP_FLAG_MF = 0x1
#: Linux's net.ipv4.ip_default_ttl, so replies look like a Linux host's.
REPLY_TTL = 64
#: Exchanges kept in memory (a ``--serve`` session may run for hours); the counters count them all.
LOG_LIMIT = 10_000


@dataclass(frozen=True)
class Exchange:
    """One request the tenant answered and the reply it sent, as whole Ethernet frames."""

    kind: str  # "arp" or "echo"
    request: bytes
    reply: bytes


def answer(frame: bytes, mac: bytes, ip: str) -> Exchange | None:
    """The reply a host with ``mac`` and ``ip`` owes this frame, or None if it owes none."""
    try:
        pkt = Ether(frame)
    except Exception:  # scapy raises many kinds on garbage; garbage gets no answer
        return None
    if ARP in pkt:
        return _answer_arp(frame, pkt, mac, ip)
    if IP in pkt and ICMP in pkt:
        return _answer_echo(frame, pkt, mac, ip)
    return None


def _answer_arp(frame: bytes, pkt: Ether, mac: bytes, ip: str) -> Exchange | None:
    arp = pkt[ARP]
    if arp.op != ARP_REQUEST or arp.hwtype != ARP_HW_ETHERNET or arp.ptype != ETHERTYPE_IPV4 or arp.pdst != ip:
        return None
    me = mac.hex(":")
    reply = Ether(dst=arp.hwsrc, src=me) / ARP(op=ARP_REPLY, hwsrc=me, psrc=ip, hwdst=arp.hwsrc, pdst=arp.psrc)
    return Exchange("arp", frame, bytes(reply))


def _answer_echo(frame: bytes, pkt: Ether, mac: bytes, ip: str) -> Exchange | None:
    hdr = pkt[IP]
    if pkt.type != ETHERTYPE_IPV4 or hdr.version != 4 or hdr.ihl < IPV4_MIN_IHL or hdr.dst != ip:
        return None  # untagged IPv4 only (Linux sends a TAP nothing else unless told to)
    start = ETH_HLEN
    ihl = hdr.ihl * 4
    if hdr.len < ihl + ICMP_HLEN or start + hdr.len > len(frame):
        return None  # truncated
    if checksum(frame[start : start + ihl]) != 0:
        return None  # ip_rcv_core: bad header checksum
    if hdr.flags & IP_FLAG_MF or hdr.frag:
        return None  # a fragment: not reassembled here
    message = frame[start + ihl : start + hdr.len]
    icmp = pkt[ICMP]
    if icmp.type != ICMP_ECHO_REQUEST or icmp.code != 0 or checksum(message) != 0:
        return None  # icmp_rcv: bad checksum; or not an echo request
    data = message[ICMP_HLEN:]
    reply = (
        Ether(dst=pkt.src, src=mac.hex(":"))
        / IP(src=ip, dst=hdr.src, ttl=REPLY_TTL, tos=hdr.tos, id=hdr.id)
        / ICMP(type=ICMP_ECHO_REPLY, code=0, id=icmp.id, seq=icmp.seq)
        / Raw(load=data)
    )
    return Exchange("echo", frame, bytes(reply))


class EchoResponder:
    """The tenant: one RX and one TX queue on ``nic``, answering for ``ip`` with ``mac``."""

    def __init__(self, sys: Syscalls, nic: str, mac: bytes, ip: str, ring: int = 64, batch: int = 32) -> None:
        self.mac = bytes(mac)
        self.ip = ip
        self.batch = batch
        self.rx = RxQueue(sys, nic, size=ring)
        self.tx = TxQueue(sys, nic, size=ring)
        self.log: deque[Exchange] = deque(maxlen=LOG_LIMIT)
        self.answered = {"arp": 0, "echo": 0}
        self.ignored = 0  # frames that owed no answer (other hosts' traffic, bad checksums, other protocols)
        self._pending: deque[bytes] = deque()  # replies the TX ring had no room for yet

    def poll(self) -> int:
        """One round of the tenant's loop: receive a burst, answer it, send; return frames received."""
        frames = self.rx.rx_burst(self.batch)
        for frame in frames:
            exchange = answer(frame, self.mac, self.ip)
            if exchange is None:
                self.ignored += 1
                continue
            self.answered[exchange.kind] += 1
            self.log.append(exchange)
            self._pending.append(exchange.reply)
        self.flush()
        return len(frames)

    def flush(self) -> int:
        """Send the replies that wait, as many as the TX ring takes; return how many went."""
        if not self._pending:
            return 0
        sent = self.tx.tx_burst(FrameBatch.from_frames(self._pending))
        for _ in range(sent):
            self._pending.popleft()
        return sent

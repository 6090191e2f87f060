"""The ping demo's tenant without root: ARP and ICMP echo through the emulated NIC, its rings and the verifier.

The TAP's descriptor is replaced by one end of a SOCK_SEQPACKET socket pair,
which has the same contract (one frame per read and per write, message
boundaries kept); the test writes Linux's side of the conversation into the
other end and reads back what the NIC transmitted.  Everything in between
is the real thing: ``TapWire``, the NIC's filter and engines, the kernel's
checks, the tenant's ``rx_burst``/``tx_burst`` and the pump.
"""

from __future__ import annotations

import dataclasses
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import checksum

from device.e1000 import EngineMode
from driver.tap.wire import TapWire
from ring.descriptors import ETH_MIN_FRAME
from sandbox.demos.ping import Pump
from sandbox.demos.responder import EchoResponder, answer
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection
from world import scenario
from world.build import World

LINUX_MAC = "02:11:22:33:44:55"
LINUX_IP = "198.18.0.1"
TENANT_IP = "198.18.0.2"
TENANT_MAC = "02:00:00:00:00:02"  # world/scenarios/ping.toml
ETH_IP = 14
WAIT_S = 5.0


class SocketChannel:
    """A FrameChannel over a SEQPACKET socket: what a TAP descriptor looks like to the wire."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_frame(self) -> bytes | None:
        try:
            return self.sock.recv(65536)
        except BlockingIOError:
            return None

    def write_frame(self, frame: bytes) -> bool:
        self.sock.send(frame)
        return True


@dataclass
class Peer:
    """Linux's end of the wire, driven by the test, and the sandbox's pump."""

    world: World
    linux: socket.socket
    pump: Pump
    responder: EchoResponder

    def send(self, *frames: bytes) -> None:
        for frame in frames:
            self.linux.send(frame)
        self.pump.step(0)
        self.world.settle()  # threaded engine: the poller has transmitted the replies

    def replies(self, expected: int) -> list[bytes]:
        got: list[bytes] = []
        while len(got) < expected and select.select([self.linux], [], [], WAIT_S)[0]:
            got.append(self.linux.recv(65536))
        return got

    def nothing_back(self) -> bool:
        return not select.select([self.linux], [], [], 0)[0]


def make_peer(protection: Protection = Protection.VERIFIER, engine: EngineMode = EngineMode.INLINE) -> Peer:
    scen = scenario.load(None, embedded="ping")
    scen = dataclasses.replace(scen, protection=protection, engine=engine)
    world = World.build(scen, pcap=False, audit=MemoryAudit())
    tenant = scen.tenants[0]
    nic = world.nics[tenant.nic]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    wire = TapWire(nic.port, SocketChannel(ours), burst=16)
    nic.attach()
    responder = EchoResponder(world.tenants[tenant.name], tenant.nic, nic.mac, tenant.ip, tenant.ring)
    return Peer(world, theirs, Pump(world, wire, responder), responder)


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = make_peer()
    yield p
    p.world.close()


def arp_request(target: str = TENANT_IP) -> bytes:
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=LINUX_MAC) / ARP(op=1, hwsrc=LINUX_MAC, psrc=LINUX_IP, pdst=target))


def echo_request(data: bytes, seq: int = 1, ident: int = 0x1234, dst: str = TENANT_IP, **ip: Any) -> bytes:
    return bytes(
        Ether(dst=TENANT_MAC, src=LINUX_MAC)
        / IP(src=LINUX_IP, dst=dst, **ip)
        / ICMP(type=8, id=ident, seq=seq)
        / Raw(load=data)
    )


def icmp_message(frame: bytes) -> bytes:
    """The ICMP message of an IPv4 frame, cut by the IP total length (Ethernet padding excluded)."""
    ip = Ether(frame)[IP]
    return frame[ETH_IP + ip.ihl * 4 : ETH_IP + ip.len]


def test_arp_request_for_the_tenant_is_answered_with_its_mac(peer: Peer) -> None:
    peer.send(arp_request())
    (reply,) = peer.replies(1)
    pkt = Ether(reply)
    assert pkt.dst == LINUX_MAC and pkt.src == TENANT_MAC
    arp = pkt[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (2, TENANT_MAC, TENANT_IP, LINUX_MAC, LINUX_IP)
    assert len(reply) == ETH_MIN_FRAME  # 42 bytes built, padded by the NIC (TCTL.PSP)
    assert peer.responder.answered == {"arp": 1, "echo": 0}


@pytest.mark.parametrize("size", [0, 18, 56, 1000, 1472])
def test_echo_reply_returns_the_request_data_byte_for_byte(peer: Peer, size: int) -> None:
    data = bytes((i * 7 + size) & 0xFF for i in range(size))
    request = echo_request(data, seq=size, tos=0x10, id=99)
    peer.send(request)
    (reply,) = peer.replies(1)
    pkt = Ether(reply)
    assert (pkt.src, pkt.dst) == (TENANT_MAC, LINUX_MAC)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].tos) == (TENANT_IP, LINUX_IP, 0x10)
    assert checksum(reply[ETH_IP : ETH_IP + pkt[IP].ihl * 4]) == 0  # IP header checksum verifies
    message = icmp_message(reply)
    assert checksum(message) == 0  # ICMP checksum verifies
    assert (pkt[ICMP].type, pkt[ICMP].code, pkt[ICMP].id, pkt[ICMP].seq) == (0, 0, 0x1234, size)
    assert message[8:] == data == icmp_message(request)[8:]
    exchange = peer.responder.log[-1]
    assert (exchange.kind, exchange.request, exchange.reply) == ("echo", request, reply[: len(exchange.reply)])


def test_frames_that_owe_no_answer_get_none(peer: Peer) -> None:
    good = echo_request(b"x" * 32)
    bad_icmp = bytearray(good)
    bad_icmp[-1] ^= 0xFF  # the data no longer matches the ICMP checksum
    bad_ip = bytearray(good)
    bad_ip[ETH_IP + 8] ^= 0x01  # TTL changed, header checksum not
    not_request = bytes(Ether(dst=TENANT_MAC, src=LINUX_MAC) / IP(src=LINUX_IP, dst=TENANT_IP) / ICMP(type=0))
    fragment = echo_request(b"y" * 32, flags="MF")
    owed_nothing = [
        arp_request("198.18.0.9"),  # someone else's address
        bytes(Ether(dst=TENANT_MAC, src=LINUX_MAC) / ARP(op=2, psrc=LINUX_IP, pdst=TENANT_IP)),  # a reply
        echo_request(b"z", dst="198.18.0.9"),
        bytes(bad_icmp),
        bytes(bad_ip),
        not_request,
        fragment,
    ]
    for frame in owed_nothing:
        assert answer(frame, bytes.fromhex(TENANT_MAC.replace(":", "")), TENANT_IP) is None
    peer.send(*owed_nothing)
    assert peer.nothing_back()
    assert peer.responder.ignored == len(owed_nothing)
    assert peer.responder.answered == {"arp": 0, "echo": 0}


def test_frames_for_another_mac_never_reach_the_tenant(peer: Peer) -> None:
    other = bytearray(echo_request(b"q" * 10))
    other[0:6] = bytes.fromhex("020000000099")
    peer.send(bytes(other))
    assert peer.nothing_back()
    assert peer.responder.ignored == 0  # the NIC's address filter dropped it before any ring
    assert peer.world.nics["nic0"].counters.rx_filtered == 1


def test_a_burst_larger_than_the_wire_burst_is_answered_in_order(peer: Peer) -> None:
    requests = [echo_request(seq.to_bytes(2, "big") * 20, seq=seq) for seq in range(40)]
    peer.send(*requests)
    replies = peer.replies(40)
    assert [Ether(r)[ICMP].seq for r in replies] == list(range(40))
    assert [icmp_message(r)[8:] for r in replies] == [icmp_message(q)[8:] for q in requests]


@pytest.mark.parametrize(
    ("protection", "engine"),
    [
        (Protection.VERIFIER, EngineMode.THREADED),
        (Protection.NONE, EngineMode.INLINE),
        (Protection.IOMMU, EngineMode.INLINE),
        (Protection.UNSAFE_INPLACE, EngineMode.THREADED),
    ],
)
def test_every_mode_answers_with_nothing_refused(protection: Protection, engine: EngineMode) -> None:
    p = make_peer(protection, engine)
    try:
        p.send(arp_request(), *(echo_request(bytes([seq]) * 64, seq=seq) for seq in range(10)))
        replies = p.replies(11)
        assert len(replies) == 11
        assert Ether(replies[0])[ARP].op == 2
        assert [Ether(r)[ICMP].seq for r in replies[1:]] == list(range(10))
        assert p.responder.rx.stats.refused == p.responder.tx.stats.refused == 0
        audit = p.world.kernel.audit
        assert isinstance(audit, MemoryAudit) and sum(audit.counters.values()) == 0
    finally:
        p.world.close()

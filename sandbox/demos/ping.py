"""``nic-sandbox demo ping``: the Linux network stack pings a tenant through a TAP device.

The demo creates a network namespace holding one TAP interface
(198.18.0.1/24, up, no default route) and plugs an emulated NIC's port into
the TAP's descriptor (``driver/tap/wire.py``).  Frames Linux sends out of
the TAP reach the NIC's address filter and RX engine; frames the NIC
transmits are written back into the TAP.  On that NIC a tenant
(``sandbox/demos/responder.py``) answers ARP and ICMP echo from user space,
through its rings, with the kernel's verifier checking every descriptor.
Then the real ``ping`` (iputils) runs inside the namespace.

One thread does everything (``Pump``): ``select`` on the TAP descriptor and
on ping's output with a timeout, then one RX/TX round of the tenant.  An
idle demo therefore sleeps in ``select`` instead of spinning, while a ping
in flight is answered within one round.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import select
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from driver.netns import NetNamespace
from driver.tap.device import IFNAMSIZ, TapDevice
from driver.tap.wire import TapWire
from ring.descriptors import ETH_FCS_LEN
from sandbox.demos.responder import ICMP_HLEN, EchoResponder
from world.build import World
from world.scenario import TenantSpec
from world.traffic import ETH_HLEN, IP_HLEN

#: The Linux side of the TAP: the only address in the namespace besides lo, on a /24 with no gateway.
LINUX_SIDE = IPv4Interface("198.18.0.1/24")
#: Bytes of a frame on the wire (FCS included, the project's convention) around ping's -s payload.
PING_OVERHEAD = ETH_HLEN + IP_HLEN + ICMP_HLEN + ETH_FCS_LEN
#: iputils ping's default payload (-s 56), as a frame size on the wire.
DEFAULT_FRAME_SIZE = 56 + PING_OVERHEAD
#: How long one pump round may sleep in select when nothing arrives.
IDLE_WAIT_S = 0.2
#: Seconds ping may take beyond count x interval before the demo gives up on it.
DEADLINE_SLACK_S = 3

_taps = itertools.count()


def payload_for(frame_size: int) -> int:
    """ping's ``-s`` for a frame of ``frame_size`` bytes on the wire (FCS included)."""
    return frame_size - PING_OVERHEAD


def tap_name() -> str:
    """A TAP name unique to this process (it exists briefly in the root namespace before it moves)."""
    n = next(_taps)
    name = f"nsbt{os.getpid()}" + (f"-{n}" if n else "")
    return name[: IFNAMSIZ - 1]


def check_tenant(spec: TenantSpec) -> None:
    """The tenant must sit on the TAP's subnet, at another address than Linux's."""
    address = IPv4Address(spec.ip)
    if address not in LINUX_SIDE.network or address in (LINUX_SIDE.ip, LINUX_SIDE.network.broadcast_address):
        raise ValueError(
            f"tenant {spec.name!r} has address {spec.ip}; the ping demo needs a host address in "
            f"{LINUX_SIDE.network} other than the TAP's {LINUX_SIDE.ip}"
        )


class Pump:
    """Moves frames TAP -> NIC -> tenant -> NIC -> TAP, one ``select`` at a time."""

    def __init__(self, world: World, wire: TapWire, responder: EchoResponder) -> None:
        self.world = world
        self.wire = wire
        self.responder = responder

    def step(self, timeout: float, others: Sequence[int] = ()) -> set[int]:
        """Wait up to ``timeout`` for the TAP or ``others``; serve the TAP; return which of ``others`` are ready."""
        tap = self.wire.fileno()
        ready, _, _ = select.select([tap, *others], [], [], timeout)
        while True:
            delivered = self.wire.pump()  # one burst into the NIC (inline: placed in the RX ring now)
            self.world.settle()  # threaded engine: let the poller place it
            while self.responder.poll():
                pass
            if not delivered:
                break
        return {fd for fd in ready if fd != tap}


@dataclass
class Session:
    """A live TAP peer: the namespace, the TAP, the wire, the tenant and the pump."""

    netns: NetNamespace
    tap: TapDevice
    wire: TapWire
    responder: EchoResponder
    pump: Pump
    nic: str
    tenant_ip: str
    tenant_mac: bytes


@contextmanager
def tap_session(world: World, tenant: TenantSpec) -> Iterator[Session]:
    """Namespace + TAP + NIC port + responding tenant; everything is removed when the block ends."""
    check_tenant(tenant)
    nic = world.nics[tenant.nic]
    with NetNamespace("ping") as netns, TapDevice(tap_name()) as tap:
        netns.move_in(tap.name)
        netns.bring_up(tap.name, str(LINUX_SIDE))
        wire = TapWire(nic.port, tap, burst=max(1, min(32, tenant.ring // 2)))
        try:
            nic.attach()  # the port has a wire now: link up
            responder = EchoResponder(world.tenants[tenant.name], tenant.nic, nic.mac, tenant.ip, tenant.ring)
            yield Session(netns, tap, wire, responder, Pump(world, wire, responder), tenant.nic, tenant.ip, nic.mac)
        finally:
            wire.unplug()
            nic.attach()


# -- running ping --------------------------------------------------------------------------------

#: iputils ping's per-reply line, e.g. ``64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=0.412 ms``.
REPLY_LINE = re.compile(
    r"^(?P<bytes>\d+) bytes from (?P<src>[\d.]+): icmp_seq=(?P<seq>\d+) ttl=(?P<ttl>\d+)"
    r"(?: time=(?P<ms>[\d.]+) ms)?(?P<notes>.*)$"
)
#: ``5 packets transmitted, 5 received, [+1 duplicates,] 0% packet loss, time 804ms``.
SUMMARY_LINE = re.compile(r"^(?P<tx>\d+) packets transmitted, (?P<rx>\d+) received")
#: iputils compares every reply's data with what it sent and prints this for each differing byte.
WRONG_BYTE = "wrong data byte"


@dataclass(frozen=True)
class Reply:
    """One echo reply as ping reported it."""

    seq: int
    nbytes: int  # ICMP bytes received (header + data)
    ttl: int
    rtt_ms: float | None
    duplicate: bool
    bad_checksum: bool


#: Called with every line ping prints, and the reply it reports if it is a reply line.
LineSink = Callable[[str, Reply | None], None]


@dataclass
class PingReport:
    """What ping saw, and what the tenant did."""

    count: int
    payload: int
    interval: float
    replies: list[Reply] = field(default_factory=list)
    transmitted: int = 0
    received: int = 0
    wrong_bytes: int = 0  # ping's "wrong data byte" lines: replies whose data differed from the request's
    exit_code: int = 0
    output: list[str] = field(default_factory=list)
    neighbour: str = ""  # Linux's ARP entry for the tenant after the run
    arp_answered: int = 0
    echo_answered: int = 0
    ignored: int = 0
    seconds: float = 0.0

    @property
    def rtts_ms(self) -> list[float]:
        return [r.rtt_ms for r in self.replies if r.rtt_ms is not None and not r.duplicate]

    @property
    def duplicates(self) -> int:
        return sum(r.duplicate for r in self.replies)

    @property
    def corrupt(self) -> int:
        return sum(r.bad_checksum for r in self.replies) + self.wrong_bytes

    @property
    def short(self) -> int:
        """Replies that carried fewer bytes than the request (ICMP header + payload)."""
        return sum(r.nbytes != self.payload + ICMP_HLEN for r in self.replies)

    @property
    def ok(self) -> bool:
        """Every echo answered once, in full, and ping found every reply's data equal to its request's."""
        return (
            self.transmitted == self.count
            and self.received == self.count
            and len(self.replies) == self.count
            and self.duplicates == self.corrupt == self.short == 0
            and self.exit_code == 0
        )


class PingError(RuntimeError):
    """ping could not run or did not finish; the message is one line."""


def ping_argv(target: str, count: int, payload: int, interval: float) -> list[str]:
    """iputils ping: numeric, ``count`` echoes of ``payload`` bytes, one each ``interval`` s, with a deadline."""
    deadline = math.ceil(count * interval) + DEADLINE_SLACK_S
    return ["ping", "-n", "-c", str(count), "-s", str(payload), "-i", f"{interval:g}", "-w", str(deadline), target]


def run_ping(
    session: Session,
    count: int,
    payload: int,
    interval: float,
    on_line: LineSink | None = None,
) -> PingReport:
    """Run ping inside the namespace against the tenant while the pump answers; parse what ping says."""
    report = PingReport(count, payload, interval)
    argv = ping_argv(session.tenant_ip, count, payload, interval)
    give_up = time.monotonic() + math.ceil(count * interval) + 2 * DEADLINE_SLACK_S
    start = time.perf_counter()
    proc = session.netns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    pending = b""
    while True:
        if out in session.pump.step(IDLE_WAIT_S, [out]):
            chunk = os.read(out, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                _take_line(report, raw.decode(errors="replace"), on_line)
        if time.monotonic() > give_up:
            raise PingError(f"ping did not finish within {give_up - start:.0f} s")
    if pending:
        _take_line(report, pending.decode(errors="replace"), on_line)
    try:
        report.exit_code = proc.wait(timeout=DEADLINE_SLACK_S)
    except subprocess.TimeoutExpired:
        raise PingError(f"ping closed its output but was still running {DEADLINE_SLACK_S} s later") from None
    report.seconds = time.perf_counter() - start
    if report.transmitted == 0:
        said = next((line for line in report.output if line.strip()), f"exit code {report.exit_code}")
        raise PingError(f"ping failed: {said.strip()}")
    report.neighbour = session.netns.neighbour(session.tenant_ip)
    tenant = session.responder
    report.arp_answered, report.echo_answered = tenant.answered["arp"], tenant.answered["echo"]
    report.ignored = tenant.ignored
    return report


def _take_line(report: PingReport, line: str, on_line: LineSink | None) -> None:
    report.output.append(line)
    reply: Reply | None = None
    if match := REPLY_LINE.match(line):
        notes = match["notes"]
        ms = match["ms"]
        reply = Reply(
            seq=int(match["seq"]),
            nbytes=int(match["bytes"]),
            ttl=int(match["ttl"]),
            rtt_ms=float(ms) if ms is not None else None,
            duplicate="DUP!" in notes,
            bad_checksum="BAD CHECKSUM" in notes,
        )
        report.replies.append(reply)
    elif match := SUMMARY_LINE.match(line):
        report.transmitted, report.received = int(match["tx"]), int(match["rx"])
    elif WRONG_BYTE in line:
        report.wrong_bytes += 1
    if on_line is not None:
        on_line(line, reply)


def serve(session: Session, stop: Callable[[], bool] = lambda: False) -> None:
    """Answer whatever arrives until ``stop()`` is true or Ctrl-C (KeyboardInterrupt) ends it."""
    while not stop():
        session.pump.step(IDLE_WAIT_S)

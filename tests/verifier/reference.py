"""A reference checker, one descriptor at a time, written from the rules of verifier/rules/reasons.py.

It shares no code with verifier/rules/checks.py (nor imports it): plain Python
integers and loops, so a slip in the vectorised arithmetic (a wrap, an
off-by-one at a page edge, a fast path that skips a rule) shows up as a
disagreement.  What it needs to know of the world is given as plain data:
which frames the tenant has pinned with which access, which frames it
pinned once and released, and who owns every frame.

Priority when a descriptor breaks several rules, as the kernel documents it:
command bits, then zero length, then the per-buffer limit, then the range
(wrap, beyond memory, then the first frame of the range that is not pinned
with the needed access: pinned with the other access, released, or never
pinned).  A checksum offset outside its packet is the first descriptor's own
fault.  Packet rules come last: a packet with too many fragments (else too
many bytes) gives that reason to every fragment not already refused for its
own; otherwise a packet with a refused fragment refuses the others as
PKT_BAD_FRAGMENT.  The packet still open at the end of the batch is held
unless it is already doomed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC
from ring.memory import OWNER_FREE, OWNER_KERNEL
from ring.syscalls import DEVICE_READ, DEVICE_WRITE
from verifier.rules.policy import Policy

PAGE = 4096
U64_LIMIT = 1 << 64


@dataclass(frozen=True)
class World:
    """What the reference knows: the tenant, its pins, and who owns each frame."""

    tenant: int
    access: dict[int, int]  # frame -> device access bits of the tenant's active pin on it
    released: frozenset[int]  # frames the tenant pinned once and has released (not pinned again)
    owners: Sequence[int]  # ground-truth owner of every frame of memory
    memory_size: int


@dataclass(frozen=True)
class Verdict:
    reason: str  # "OK" or a reason name
    bad_byte: int | None = None  # first offending byte, for address rules
    owner: str | None = None  # whose frame the first offending byte lies in
    held: bool = False


OK = Verdict("OK")


def owner_name(owner: int, tenant: int) -> str:
    if owner == tenant:
        return "own"
    if owner == OWNER_FREE:
        return "free"
    if owner == OWNER_KERNEL or owner < 0:
        return "kernel"
    return f"tenant{owner}"


def judge_range(addr: int, length: int, need: int, world: World) -> Verdict:
    """The address rules for ``[addr, addr + length)`` (length >= 1), one frame at a time."""
    end = addr + length
    if end >= U64_LIMIT:
        return Verdict("ADDR_WRAP")
    if end > world.memory_size:
        return Verdict("ADDR_BEYOND_MEMORY", max(addr, world.memory_size))
    for frame in range(addr // PAGE, (end - 1) // PAGE + 1):
        access = world.access.get(frame, 0)
        if access & need:
            continue
        bad = max(addr, frame * PAGE)
        owner = world.owners[frame]
        if access:
            return Verdict("ACCESS_NO_READ" if need == DEVICE_READ else "ACCESS_NO_WRITE", bad, "own")
        if frame in world.released and owner == world.tenant:
            return Verdict("PIN_RELEASED", bad, "own")
        label = "own-unpinned" if owner == world.tenant else owner_name(owner, world.tenant)
        return Verdict("ADDR_NOT_PINNED", bad, label)
    return OK


@dataclass(frozen=True)
class TxDesc:
    addr: int
    length: int
    cmd: int = TXD_CMD_EOP
    cso: int = 0
    css: int = 0


def check_tx(descs: Sequence[TxDesc], world: World, policy: Policy) -> list[Verdict]:
    """One verdict per descriptor of a TX batch, in ring order."""
    own: list[Verdict] = []
    for d in descs:
        if d.cmd & ~policy.tx_cmd_allowed & 0xFF:
            own.append(Verdict("CMD_UNSUPPORTED"))
        elif d.length == 0:
            own.append(Verdict("LEN_ZERO"))
        elif d.length > policy.max_buffer:
            own.append(Verdict("LEN_TOO_LONG"))
        else:
            own.append(judge_range(d.addr, d.length, DEVICE_READ, world))
    # cut the batch into packets: each ends at an EOP; the last may still be open
    packets: list[list[int]] = [[]]
    for i, d in enumerate(descs):
        packets[-1].append(i)
        if d.cmd & TXD_CMD_EOP:
            packets.append([])
    out = list(own)
    for number, members in enumerate(packets):
        if not members:
            continue
        complete = number < len(packets) - 1
        total = sum(descs[i].length for i in members)
        first = descs[members[0]]
        outside = first.cso + 2 > total or first.css >= total
        if complete and first.cmd & TXD_CMD_IC and own[members[0]] == OK and outside:
            out[members[0]] = Verdict("CSUM_OFFSET")
        rule = None
        if len(members) > policy.max_fragments:
            rule = "PKT_TOO_MANY_FRAGS"
        elif total > policy.max_frame:
            rule = "PKT_TOO_LONG"
        elif any(out[i] != OK for i in members):
            rule = "PKT_BAD_FRAGMENT"
        for i in members:
            if rule is not None and out[i] == OK:
                out[i] = Verdict(rule)
            elif rule is None and not complete:
                out[i] = Verdict("OK", held=True)
    return out


def check_rx(addrs: Sequence[int], world: World, policy: Policy) -> list[Verdict]:
    """One verdict per posted RX buffer: the whole receive buffer must be writable and the tenant's."""
    return [judge_range(a, policy.rx_buffer_size, DEVICE_WRITE, world) for a in addrs]

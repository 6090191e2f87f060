"""Valid and invalid RDMA work requests, aimed at a tenant's memory regions, deterministic by seed.

The attacker's side of the verbs back end.  Each case is one work request
under test (on the send queue or the receive queue), plus the valid
companion the transport needs to exercise it: a receive WR to land a SEND
in, or a SEND to fill a receive WR (rxe checks a receive SGE only when data
reaches it, so a companion SEND always fills the receive WR exactly).

The generator knows only the MR layout and its own intent (``valid``); it
shares no code with the verifier's checks, so the differential test can
hold the verifier, the generator's intent and the real device against one
another.

Classes, each aimed at one rule (docs/verbs.md):

=========================  ==========================================================
valid                      inside one or more MRs, exact MR bounds, zero-length SGEs
                           with garbage keys, RDMA WRITE/READ within remote MRs
straddle-start/-end        an SGE one byte before the MR's start / past its end
wrong-lkey, other-pd-lkey  a key no MR has; a key of another tenant's MR
wrap                       ``addr + length`` past 2**64 with a valid lkey
second-sge-bad             the first SGE fine, the second straddling its MR's end
too-many-sge               ``max_sge + 1`` valid SGEs
wrong-rkey, other-pd-rkey  RDMA with an rkey no MR has, or of another tenant
no-remote-write/-read      RDMA WRITE into an MR without REMOTE_WRITE (READ: REMOTE_READ)
remote-straddle-end        RDMA whose remote range ends one byte past the remote MR
zero-byte-rdma             RDMA with no data and a garbage rkey (valid: nothing to check)
both-sides-bad             local and remote both wrong: which one rxe reports (WRITE: local, READ: remote)
key-before-range           a bad key in the first SGE, a straddle in the second: the first bad SGE wins
read-into-readonly         RDMA READ whose local SGE lies in an MR without LOCAL_WRITE
recv-readonly              a receive WR into an MR without LOCAL_WRITE
=========================  ==========================================================
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ring.verbs_format import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    WorkBatch,
    recv_batch,
    send_batch,
)

LW, RW, RR = IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_READ


@dataclass(frozen=True)
class MrSpec:
    """One memory region of the lab layout: where in its owner's arena, how long, which access."""

    name: str
    owner: str  # "tenant" (the tenant under test) or "other" (another tenant, another PD)
    offset: int
    length: int
    access: int


#: The lab's layout.  Gaps between MRs are mapped arena memory that is *not* registered, so a
#: straddling SGE names real bytes of the tenant's own process: only the MR rule stops it.
MR_SPECS: tuple[MrSpec, ...] = (
    MrSpec("rw", "tenant", 0x1000, 0x4000, LW | RW | RR),
    MrSpec("odd", "tenant", 0x6010, 0xBE0, LW | RW | RR),  # unaligned start and end
    MrSpec("ro", "tenant", 0x7000, 0x2000, 0),  # local read only (a SEND source), rkey 0
    MrSpec("remote_ro", "tenant", 0xA000, 0x1000, LW | RR),
    MrSpec("remote_wo", "tenant", 0xC000, 0x1000, LW | RW),
    MrSpec("recv", "tenant", 0xE000, 0x1800, LW),  # where companion receives land
    MrSpec("other", "other", 0x1000, 0x1000, LW | RW | RR),
)
ARENA_SIZE = 0x10000  # each tenant's arena: 64 KiB of anonymous memory


@dataclass(frozen=True)
class VerbsLayout:
    """The registered MRs by name (``MR_RECORD`` rows, real keys) and the QP's SGE limits."""

    mrs: dict[str, np.void]
    max_send_sge: int
    max_recv_sge: int

    def lkeys(self) -> set[int]:
        return {int(r["lkey"]) for r in self.mrs.values()}

    def rkeys(self) -> set[int]:
        return {int(r["rkey"]) for r in self.mrs.values()}


@dataclass(frozen=True)
class VerbsCase:
    """One WR under test, the companion that exercises it, and what the generator meant."""

    name: str  # e.g. "send/straddle-end#2"
    klass: str  # the attack class ("straddle-end")
    queue: str  # "send" or "recv": which queue the WR under test goes to
    batch: WorkBatch  # exactly one WR
    companion: WorkBatch | None  # recv for a SEND under test, SEND for a receive under test, else None
    valid: bool  # the generator's intent

    @property
    def wr_id(self) -> int:
        return int(self.batch.wrs["wr_id"][0])

    @property
    def opcode(self) -> int | None:
        return int(self.batch.wrs["opcode"][0]) if self.queue == "send" else None

    @property
    def message_length(self) -> int:
        return int(self.batch.message_length()[0])


# -- helpers ----------------------------------------------------------------------------------
Sge = tuple[int, int, int]


def _mr(layout: VerbsLayout, name: str) -> tuple[int, int, int, int]:
    r = layout.mrs[name]
    return int(r["addr"]), int(r["length"]), int(r["lkey"]), int(r["rkey"])


def _inside(rng: random.Random, layout: VerbsLayout, name: str, max_len: int = 1500) -> Sge:
    addr, length, lkey, _ = _mr(layout, name)
    n = rng.randint(1, min(max_len, length))
    off = rng.randint(0, length - n)
    return addr + off, n, lkey


def _unused_key(rng: random.Random, used: set[int]) -> int:
    while True:
        key = rng.getrandbits(32)
        if key not in used and key != 0:
            return key


def _with_recv(layout: VerbsLayout, wr_id: int, length: int) -> WorkBatch:
    addr, _, lkey, _ = _mr(layout, "recv")
    return recv_batch([(wr_id, [(addr, length, lkey)])])


def _send_case(name: str, klass: str, layout: VerbsLayout, wr_id: int, sges: list[Sge], valid: bool) -> VerbsCase:
    batch = send_batch([(wr_id, IBV_WR_SEND, sges)])
    total = sum(length for _, length, _ in sges)
    return VerbsCase(name, klass, "send", batch, _with_recv(layout, wr_id, total), valid)


def _recv_case(name: str, klass: str, layout: VerbsLayout, wr_id: int, sges: list[Sge], valid: bool) -> VerbsCase:
    batch = recv_batch([(wr_id, sges)])
    total = sum(length for _, length, _ in sges)
    addr, _, lkey, _ = _mr(layout, "rw")
    companion = send_batch([(wr_id, IBV_WR_SEND, [(addr, total, lkey)])])
    return VerbsCase(name, klass, "recv", batch, companion, valid)


#: The WR under test on the send queue (a SEND, with its receive) or the receive queue (with its SEND).
_QUEUE_CASE = {"send": _send_case, "recv": _recv_case}


def _rdma_case(
    name: str, klass: str, opcode: int, wr_id: int, sges: list[Sge], remote: tuple[int, int], valid: bool
) -> VerbsCase:
    batch = send_batch([(wr_id, opcode, sges)], rdma=[remote])
    return VerbsCase(name, klass, "send", batch, None, valid)


def _remote_inside(rng: random.Random, layout: VerbsLayout, name: str, n: int) -> tuple[int, int]:
    addr, length, _, rkey = _mr(layout, name)
    return addr + rng.randint(0, length - n), rkey


# -- the classes --------------------------------------------------------------------------------
# Each takes (rng, layout, wr_id, tag) and returns a case; ``tag`` makes names unique.  A rule that
# holds on both queues (or for both RDMA directions) has one maker, built once per queue (direction).
CaseMaker = Callable[[random.Random, VerbsLayout, int, str], VerbsCase]

SEND_SOURCES = ("rw", "odd", "ro", "remote_ro", "remote_wo")
WRITABLE = ("rw", "odd", "remote_ro", "remote_wo", "recv")


def send_inside(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    k = rng.randint(1, layout.max_send_sge)
    sges = [_inside(rng, layout, rng.choice(SEND_SOURCES), 1200) for _ in range(k)]
    return _send_case(f"send/inside{tag}", "inside", layout, wr_id, sges, True)


def _exact_bounds(queue: str) -> CaseMaker:
    """A whole MR, its first byte to its last: legal."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        addr, length, lkey, _ = _mr(layout, rng.choice(("odd", "remote_ro", "remote_wo")))
        return _QUEUE_CASE[queue](f"{queue}/exact-bounds{tag}", "exact-bounds", layout, wr_id, [(addr, length, lkey)],
                                  True)  # fmt: skip

    return make


def send_zero_sge(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    junk = (rng.getrandbits(64), 0, _unused_key(rng, layout.lkeys()))
    sges = [_inside(rng, layout, "rw", 800), junk] if layout.max_send_sge > 1 else [junk]
    return _send_case(f"send/zero-length-sge{tag}", "zero-length-sge", layout, wr_id, sges, True)


def _straddle_start(queue: str, mrs: tuple[str, ...]) -> CaseMaker:
    """An SGE that starts one byte before one of ``mrs``."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        addr, length, lkey, _ = _mr(layout, rng.choice(mrs))
        n = rng.randint(2, min(length, 1000))
        sge = (addr - 1, n, lkey)
        return _QUEUE_CASE[queue](f"{queue}/straddle-start{tag}", "straddle-start", layout, wr_id, [sge], False)

    return make


def _straddle_end(queue: str, mrs: tuple[str, ...]) -> CaseMaker:
    """An SGE whose last byte is one past the end of one of ``mrs``."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        addr, length, lkey, _ = _mr(layout, rng.choice(mrs))
        n = rng.randint(1, min(length, 1000))
        sge = (addr + length - n + 1, n, lkey)
        return _QUEUE_CASE[queue](f"{queue}/straddle-end{tag}", "straddle-end", layout, wr_id, [sge], False)

    return make


def _wrong_lkey(queue: str, mr: str) -> CaseMaker:
    """A buffer inside ``mr`` under a key no MR has."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        addr, n, lkey = _inside(rng, layout, mr, 1000)
        bad = lkey ^ (1 << rng.randint(0, 7))  # same MR index, another key byte: what a stale key looks like
        if bad in layout.lkeys():
            bad = _unused_key(rng, layout.lkeys())
        return _QUEUE_CASE[queue](f"{queue}/wrong-lkey{tag}", "wrong-lkey", layout, wr_id, [(addr, n, bad)], False)

    return make


def _other_pd_lkey(queue: str) -> CaseMaker:
    """A buffer inside another tenant's MR, under that MR's own key."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        sge = _inside(rng, layout, "other", 1000)
        return _QUEUE_CASE[queue](f"{queue}/other-pd-lkey{tag}", "other-pd-lkey", layout, wr_id, [sge], False)

    return make


def send_wrap(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    _, _, lkey, _ = _mr(layout, "rw")
    n = rng.randint(2, 256)
    addr = (1 << 64) - rng.randint(1, n - 1)
    return _send_case(f"send/wrap{tag}", "wrap", layout, wr_id, [(addr, n, lkey)], False)


def send_second_sge_bad(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    good = _inside(rng, layout, "rw", 600)
    addr, length, lkey, _ = _mr(layout, "odd")
    n = rng.randint(1, 600)
    sges = [good, (addr + length - n + 1, n, lkey)]
    return _send_case(f"send/second-sge-bad{tag}", "second-sge-bad", layout, wr_id, sges, False)


def _too_many_sge(queue: str, mr: str) -> CaseMaker:
    """One valid SGE more than the queue takes (``max_send_sge``/``max_recv_sge`` as the device granted)."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        limit = layout.max_send_sge if queue == "send" else layout.max_recv_sge
        sges = [_inside(rng, layout, mr, 64) for _ in range(limit + 1)]
        return _QUEUE_CASE[queue](f"{queue}/too-many-sge{tag}", "too-many-sge", layout, wr_id, sges, False)

    return make


def write_inside(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    sge = _inside(rng, layout, rng.choice(SEND_SOURCES), 2000)
    remote = _remote_inside(rng, layout, rng.choice(("rw", "odd", "remote_wo")), sge[1])
    return _rdma_case(f"write/inside{tag}", "inside", IBV_WR_RDMA_WRITE, wr_id, [sge], remote, True)


def _wrong_rkey(opcode: int, verb: str) -> CaseMaker:
    """RDMA into a remote range that exists, under an rkey no MR has."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        sge = _inside(rng, layout, "rw", 1000)
        addr, _ = _remote_inside(rng, layout, "rw", sge[1])
        remote = (addr, _unused_key(rng, layout.rkeys()))
        return _rdma_case(f"{verb}/wrong-rkey{tag}", "wrong-rkey", opcode, wr_id, [sge], remote, False)

    return make


def write_other_pd_rkey(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    sge = _inside(rng, layout, "rw", 1000)
    remote = _remote_inside(rng, layout, "other", sge[1])
    return _rdma_case(f"write/other-pd-rkey{tag}", "other-pd-rkey", IBV_WR_RDMA_WRITE, wr_id, [sge], remote, False)


def _remote_access_missing(opcode: int, verb: str, klass: str, mr: str) -> CaseMaker:
    """RDMA inside ``mr``, whose registration lacks the remote access this opcode needs."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        sge = _inside(rng, layout, "rw", 1000)
        remote = _remote_inside(rng, layout, mr, sge[1])
        return _rdma_case(f"{verb}/{klass}{tag}", klass, opcode, wr_id, [sge], remote, False)

    return make


def write_remote_straddle_end(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    sge = _inside(rng, layout, "rw", 1000)
    addr, length, _, rkey = _mr(layout, rng.choice(("rw", "odd")))
    remote = (addr + length - sge[1] + 1, rkey)
    name = f"write/remote-straddle-end{tag}"
    return _rdma_case(name, "remote-straddle-end", IBV_WR_RDMA_WRITE, wr_id, [sge], remote, False)


def write_straddle_end(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    addr, length, lkey, _ = _mr(layout, "odd")
    n = rng.randint(1, 1000)
    remote = _remote_inside(rng, layout, "rw", n)
    sges = [(addr + length - n + 1, n, lkey)]
    return _rdma_case(f"write/straddle-end{tag}", "straddle-end", IBV_WR_RDMA_WRITE, wr_id, sges, remote, False)


def write_zero_byte(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    addr, _, lkey, _ = _mr(layout, "rw")
    remote = (rng.getrandbits(64), _unused_key(rng, layout.rkeys()))  # a zero-byte op carries no address
    opcode = rng.choice((IBV_WR_RDMA_WRITE, IBV_WR_RDMA_READ))
    return _rdma_case(f"rdma/zero-byte{tag}", "zero-byte-rdma", opcode, wr_id, [(addr, 0, lkey)], remote, True)


def _both_sides_bad(opcode: int, verb: str) -> CaseMaker:
    """A local SGE one byte before its MR and an unknown rkey: which side rxe reports.

    A WRITE's requester reads its SGEs before anything leaves (local wins); a READ's request
    reaches the responder before any data comes back to be written (remote wins)."""

    def make(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
        addr, _, lkey, _ = _mr(layout, "odd")
        n = rng.randint(2, 1000)
        remote = (rng.getrandbits(48), _unused_key(rng, layout.rkeys()))
        name = f"{verb}/both-sides-bad{tag}"
        return _rdma_case(name, "both-sides-bad", opcode, wr_id, [(addr - 1, n, lkey)], remote, False)

    return make


def send_key_before_range(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    addr, n, _ = _inside(rng, layout, "rw", 500)
    raddr, length, rlkey, _ = _mr(layout, "odd")
    bad_key = _unused_key(rng, layout.lkeys())
    sges = [(addr, n, bad_key), (raddr + length - 10, 20, rlkey)]  # first SGE's key, then a straddle
    if layout.max_send_sge < 2:
        sges = sges[:1]
    return _send_case(f"send/key-before-range{tag}", "key-before-range", layout, wr_id, sges, False)


def read_inside(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    sge = _inside(rng, layout, rng.choice(WRITABLE), 2000)
    remote = _remote_inside(rng, layout, rng.choice(("rw", "odd", "remote_ro")), sge[1])
    return _rdma_case(f"read/inside{tag}", "inside", IBV_WR_RDMA_READ, wr_id, [sge], remote, True)


def read_into_readonly(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    sge = _inside(rng, layout, "ro", 1000)
    remote = _remote_inside(rng, layout, "rw", sge[1])
    name = f"read/into-readonly{tag}"
    return _rdma_case(name, "read-into-readonly", IBV_WR_RDMA_READ, wr_id, [sge], remote, False)


def read_straddle_start(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    addr, _, lkey, _ = _mr(layout, "odd")
    n = rng.randint(2, 1000)
    remote = _remote_inside(rng, layout, "rw", n)
    sges = [(addr - 1, n, lkey)]
    return _rdma_case(f"read/straddle-start{tag}", "straddle-start", IBV_WR_RDMA_READ, wr_id, sges, remote, False)


def recv_inside(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    k = rng.randint(1, layout.max_recv_sge)
    sges = [_inside(rng, layout, rng.choice(WRITABLE), 1200) for _ in range(k)]
    return _recv_case(f"recv/inside{tag}", "inside", layout, wr_id, sges, True)


def recv_readonly(rng: random.Random, layout: VerbsLayout, wr_id: int, tag: str) -> VerbsCase:
    sge = _inside(rng, layout, "ro", 1000)
    return _recv_case(f"recv/readonly-mr{tag}", "recv-readonly", layout, wr_id, [sge], False)


send_exact_bounds = _exact_bounds("send")
recv_exact_bounds = _exact_bounds("recv")
send_straddle_start = _straddle_start("send", ("rw", "odd", "ro"))
recv_straddle_start = _straddle_start("recv", ("rw", "odd", "recv"))
send_straddle_end = _straddle_end("send", ("rw", "odd", "ro"))
recv_straddle_end = _straddle_end("recv", ("rw", "odd", "recv"))
send_wrong_lkey = _wrong_lkey("send", "rw")
recv_wrong_lkey = _wrong_lkey("recv", "recv")
send_other_pd_lkey = _other_pd_lkey("send")
recv_other_pd_lkey = _other_pd_lkey("recv")
send_too_many_sge = _too_many_sge("send", "rw")
recv_too_many_sge = _too_many_sge("recv", "recv")
write_wrong_rkey = _wrong_rkey(IBV_WR_RDMA_WRITE, "write")
read_wrong_rkey = _wrong_rkey(IBV_WR_RDMA_READ, "read")
write_no_remote_write = _remote_access_missing(IBV_WR_RDMA_WRITE, "write", "no-remote-write", "remote_ro")
read_no_remote_read = _remote_access_missing(IBV_WR_RDMA_READ, "read", "no-remote-read", "remote_wo")
write_both_sides_bad = _both_sides_bad(IBV_WR_RDMA_WRITE, "write")
read_both_sides_bad = _both_sides_bad(IBV_WR_RDMA_READ, "read")

#: Every class, in generation order.
CLASSES: tuple[CaseMaker, ...] = (
    send_inside,
    send_exact_bounds,
    send_zero_sge,
    send_straddle_start,
    send_straddle_end,
    send_wrong_lkey,
    send_other_pd_lkey,
    send_wrap,
    send_second_sge_bad,
    send_too_many_sge,
    write_inside,
    write_wrong_rkey,
    write_other_pd_rkey,
    write_no_remote_write,
    write_remote_straddle_end,
    write_straddle_end,
    write_zero_byte,
    write_both_sides_bad,
    read_both_sides_bad,
    send_key_before_range,
    read_inside,
    read_wrong_rkey,
    read_no_remote_read,
    read_into_readonly,
    read_straddle_start,
    recv_inside,
    recv_exact_bounds,
    recv_readonly,
    recv_straddle_start,
    recv_straddle_end,
    recv_wrong_lkey,
    recv_other_pd_lkey,
    recv_too_many_sge,
)


def generate(layout: VerbsLayout, seed: int, per_class: int = 4) -> list[VerbsCase]:
    """``per_class`` cases of every class, in a seed-determined order; wr_ids are 1, 2, 3, ..."""
    rng = random.Random(seed)
    cases = []
    wr_id = 1
    for maker in CLASSES:
        for k in range(per_class):
            cases.append(maker(rng, layout, wr_id, f"#{k}"))
            wr_id += 1
    order = list(range(len(cases)))
    rng.shuffle(order)
    return [cases[i] for i in order]

"""``nic-sandbox demo attack --nic virtio``: mallory's virtqueue graph attacks, each judged in each protection mode.

The machine is the fuzzer's ``virtio`` arena (fuzz/virtio_arena.py: the attack
scenario on virtio-net NICs, mallory writing her virtqueues by hand, the
independent oracle on every DMA, the cable and her used rings).  Each attack
below is one hostile graph at a rule's boundary (or, for contrast, one at the
last valid value) from issue 16's list; it runs in the machine as built, once
per mode, and the oracle says what happened: DMA outside mallory's pins, a
secret on the wire, a chain the device never finished (liveness), or nothing,
with the kernel's audit reasons where it refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fuzz.arena import Arena, MemoryMap
from fuzz.campaign import guarded_step
from fuzz.oracle.audit import audit_count
from fuzz.steps import Attack, EveSends, Reg, VirtqPost
from fuzz.virtio_arena import MACHINE, MODES
from fuzz.virtio_classes import INDIRECT, NEXT, WRITE, attack, link, post, rx_rows, table_rows, tx_rows
from ring.memory import PAGE_SIZE
from ring.virtio import QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW, QUEUE_SEL, TRANSMITQ, VIRTQ_DESC_SIZE
from verifier.audit.log import rotated_siblings
from verifier.audit.read import read_records
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection

Build = Callable[[np.random.Generator, MemoryMap], Attack]


def _loop(rng: np.random.Generator, m: MemoryMap) -> Attack:
    graph = link([3, 4, 5], tx_rows(rng, m, 3))
    a, n, f, _ = graph[5]
    graph[5] = (a, n, f | NEXT, 4)
    return attack(post("tx", graph, [3]))


def _next_of_size(rng: np.random.Generator, m: MemoryMap) -> Attack:
    a, n, f, _ = tx_rows(rng, m, 1)[0]
    return attack(post("tx", {7: (a, n, f | NEXT, m.ring_size)}, [7]))


def _chain_of_size(rng: np.random.Generator, m: MemoryMap) -> Attack:
    slots = list(range(m.ring_size))
    return attack(post("tx", link(slots, tx_rows(rng, m, m.ring_size)), [0]))


def _indirect_loop(rng: np.random.Generator, m: MemoryMap) -> Attack:
    table = table_rows(rng, m, "tx", 3)
    a, n, f, _ = table[2]
    table[2] = (a, n, f | NEXT, 0)
    return attack(post("tx", {2: (m.scratch.bus, 3 * VIRTQ_DESC_SIZE, INDIRECT, 0)}, [2], [(0, table)]))


def _indirect_nested(rng: np.random.Generator, m: MemoryMap) -> Attack:
    table = table_rows(rng, m, "tx", 2)
    table[1] = (m.scratch.bus + 1024, 2 * VIRTQ_DESC_SIZE, INDIRECT, 0)
    return attack(post("tx", {2: (m.scratch.bus, 2 * VIRTQ_DESC_SIZE, INDIRECT, 0)}, [2], [(0, table)]))


def _chain_too_long(rng: np.random.Generator, m: MemoryMap) -> Attack:
    q = m.ring_size
    table = table_rows(rng, m, "tx", q)
    graph = link([0, 1], [*tx_rows(rng, m, 1), (m.scratch.bus, q * VIRTQ_DESC_SIZE, INDIRECT, 0)])
    return attack(post("tx", graph, [0], [(0, table)]))


def _indirect_elsewhere(rng: np.random.Generator, m: MemoryMap) -> Attack:
    return attack(post("tx", {2: (m.kernel.bus + 16 * PAGE_SIZE, 4 * VIRTQ_DESC_SIZE, INDIRECT, 0)}, [2]))


def _write_before_read(rng: np.random.Generator, m: MemoryMap) -> Attack:
    rows = tx_rows(rng, m, 1)
    graph = link([0, 1], [(m.write_pin.bus, 64, WRITE, 0), rows[0]])
    return attack(post("tx", graph, [0]))


def _avail_jump(rng: np.random.Generator, m: MemoryMap) -> Attack:
    q = m.ring_size
    graph: dict[int, tuple[int, int, int, int]] = {}
    for s in range(q):
        graph.update(link([s], tx_rows(rng, m, 1)))
    return attack(post("tx", graph, list(range(q)), jump=1), VirtqPost("tx", jump=0x10000 - q + 4))


def _used_ring(rng: np.random.Generator, m: MemoryMap) -> Attack:
    target = m.alice_rx.bus
    regs = [
        Reg(QUEUE_SEL, TRANSMITQ),
        Reg(QUEUE_DEVICE_LOW, target & 0xFFFF_FFFF),
        Reg(QUEUE_DEVICE_HIGH, target >> 32),
    ]
    return attack(*regs, post("tx", link([0], tx_rows(rng, m, 1)), [0]))


def _race_next(rng: np.random.Generator, m: MemoryMap) -> Attack:
    first = (m.write_pin.bus, 16, WRITE | NEXT, 1)
    graph = {0: first, 1: (m.write_pin.bus + 2048, 2048, WRITE, 0), 2: (m.kernel.bus + 32 * PAGE_SIZE, 2048, WRITE, 0)}
    rewrite = post("rx", {0: (*first[:3], 2)}, [], notify=False)
    return attack(post("rx", graph, [0]), rewrite, EveSends(1))


def _rx_valid(rng: np.random.Generator, m: MemoryMap) -> Attack:
    return attack(post("rx", link([0, 1], rx_rows(rng, m, 2)), [0]), EveSends(1))


#: (name, what it does, how it is built): issue 16 section 4's list, and two valid graphs at the boundary.
ATTACKS: tuple[tuple[str, str, Build], ...] = (
    ("loop-next", "a chain whose next leads back into itself", _loop),
    ("next-of-size", "a next equal to the queue size (outside the table)", _next_of_size),
    ("chain-of-size", "valid: a chain of exactly queue-size descriptors", _chain_of_size),
    ("indirect-loop", "a loop through an indirect table", _indirect_loop),
    ("indirect-nested", "an indirect descriptor inside an indirect table", _indirect_nested),
    ("chain-size+1", "a chain of queue-size + 1 buffers, through an indirect table", _chain_too_long),
    ("indirect-kernel", "an indirect table in the kernel's memory", _indirect_elsewhere),
    ("write-before-read", "a device-writable descriptor before a readable one", _write_before_read),
    ("avail-jump", "the available index moved by queue-size + 1, then back", _avail_jump),
    ("used-ring", "the used ring repointed at alice's memory", _used_ring),
    ("race-next", "a next rewritten after the notify, to kernel memory", _race_next),
    ("rx-valid", "valid: a two-buffer receive chain, one frame", _rx_valid),
)


@dataclass
class GraphResult:
    """What one attack did in one mode."""

    name: str
    title: str
    protection: Protection
    escaped: bool
    how: str
    reasons: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "protection": self.protection.value, "escaped": self.escaped, "how": self.how,
                "reasons": self.reasons}  # fmt: skip


def _reasons(audit: AuditSink, seq: int) -> list[str]:
    """The reasons of the records from ``seq`` on: from memory, or read back from the log file."""
    if audit.path is None:
        return [str(r["reason"]) if isinstance(r, dict) else r.names[int(code)]
                for r in audit.since(seq) for code in ([0] if isinstance(r, dict) else r.reason.tolist())]  # fmt: skip
    audit.commit()
    paths = [audit.path, *(p for _, p in rotated_siblings(audit.path))]
    return [str(r["reason"]) for r in read_records(paths) if int(r["seq"]) >= seq]


def run(seed: int, audit: AuditSink, modes: tuple[Protection, ...] = MODES) -> list[GraphResult]:
    """Every attack of ``ATTACKS`` in each of ``modes``, in the machine as built each time."""
    out: list[GraphResult] = []
    for mode in modes:
        arena = Arena.build(mode, seed, audit, resettable=True, machine=MACHINE)
        for name, title, build in ATTACKS:
            arena.reset()
            before = audit_count(audit)
            found = guarded_step(arena, build(np.random.default_rng(seed), arena.map)) + arena.close()
            reasons = _reasons(audit, before)
            if found:
                first = found[0]
                how = f"{first.kind}: {first.what}" + (f" (+{len(found) - 1} more)" if len(found) > 1 else "")
            elif audit_count(audit) > before:
                how = "refused: " + ", ".join(dict.fromkeys(reasons)) if reasons else "refused and audited"
            else:
                how = "accepted, nothing escaped"
            out.append(GraphResult(name, title, mode, bool(found), how, reasons))
    return out

"""The virtqueue step (``virtq``): mallory writes a graph into her virtqueue by hand and notifies.

One op writes descriptors into her descriptor table by slot, indirect
tables into her scratch page (pinned device-read) by byte offset, heads into
her available ring, and publishes the available index (her own count plus
``jump``), then notifies the queue -- or, with ``"notify": false``, only
writes: after an earlier notify that is the race (``next`` or an indirect
entry rewritten after the kernel took its copy).  It runs on the ``virtio``
machine (fuzz/virtio_arena.py).  A descriptor is the ``struct virtq_desc`` of
ring/virtio.py: ``{"slot": 3, "addr": "0x7000", "len": 140, "flags": 1,
"next": 4}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from fuzz.steps.base import Step
from fuzz.steps.spec import U16, U32, U64, Flag, Int, Key, ListOf, Record, Text, u
from ring.memory import PAGE_SIZE
from ring.virtio import VIRTQ_DESC, VIRTQ_DESC_SIZE

if TYPE_CHECKING:
    from fuzz.arena import Arena

Rows = npt.NDArray[np.void]
#: At most so many descriptors, table rows or heads in one op (mallory's queues hold 32; tables fill a page).
MOST = PAGE_SIZE // VIRTQ_DESC_SIZE

ROW = {"addr": Key(u(U64, "#x")), "len": Key(u(U32)), "flags": Key(u(U16), default=0), "next": Key(u(U16), default=0)}
SLOT_ROW = Record({"slot": Key(u(U16)), **ROW})


def rows(items: list[dict[str, int]]) -> Rows:
    """``struct virtq_desc`` rows from their fields."""
    out = np.zeros(len(items), dtype=VIRTQ_DESC)
    for i, d in enumerate(items):
        out[i] = (d["addr"], d["len"], d["flags"], d["next"])
    return out


def _unrows(r: Rows) -> list[dict[str, int]]:
    return [{"addr": a, "len": n, "flags": f, "next": x} for a, n, f, x in r.tolist()]


def _build_slots(items: list[dict[str, int]]) -> tuple[tuple[int, Rows], ...]:
    return tuple((d["slot"], rows([d])) for d in items)


def _unbuild_slots(value: tuple[tuple[int, Rows], ...]) -> list[dict[str, int]]:
    return [{"slot": slot, **_unrows(r)[0]} for slot, r in value]


TABLE = Record({"at": Key(Int(0, PAGE_SIZE - 1)), "descs": Key(ListOf(Record(ROW), MOST, rows, _unrows))})


def _build_tables(items: list[dict[str, Any]]) -> tuple[tuple[int, Rows], ...]:
    return tuple((d["at"], d["descs"]) for d in items)


def _unbuild_tables(value: tuple[tuple[int, Rows], ...]) -> list[dict[str, Any]]:
    return [{"at": at, "descs": r} for at, r in value]


@dataclass(frozen=True, eq=False)
class VirtqPost(Step):
    """Mallory writes a graph into her ``queue`` ("tx" or "rx") and notifies it (see the module)."""

    queue: str
    descs: tuple[tuple[int, Rows], ...] = ()
    tables: tuple[tuple[int, Rows], ...] = ()
    heads: tuple[int, ...] = field(default=())
    jump: int = 0
    notify: bool = True

    kind: ClassVar[str] = "virtq"
    VERB: ClassVar[str] = "refused"
    FIELDS: ClassVar[dict[str, Key]] = {
        "queue": Key(Text(("tx", "rx"))),
        "descs": Key(ListOf(SLOT_ROW, MOST, _build_slots, _unbuild_slots), default=()),
        "tables": Key(ListOf(TABLE, 8, _build_tables, _unbuild_tables), default=()),
        "heads": Key(ListOf(u(U16), MOST, tuple, list), default=()),
        "jump": Key(u(U16), default=0, always=False),
        "notify": Key(Flag(), default=True, always=False),
    }

    def run(self, arena: Arena) -> None:
        from fuzz.virtio_arena import virtio_arena  # the virtio machine builds on fuzz.arena, which steps name

        virtio_arena(arena).virtq(self.queue, list(self.descs), list(self.tables), list(self.heads), self.jump,
                                  self.notify)  # fmt: skip

    def describe(self) -> str:
        parts = [f"{len(self.descs)} descriptor(s)"]
        if self.tables:
            parts.append(f"{len(self.tables)} indirect table(s) of {sum(r.size for _, r in self.tables)} entries")
        if self.heads:
            parts.append(f"heads {list(self.heads)[:6]}{' ...' if len(self.heads) > 6 else ''}")
        if self.jump:
            parts.append(f"avail idx {self.jump} past her count")
        how = "then notifies" if self.notify else "without a notify (after an earlier one: the race)"
        return f"virtq {self.queue}: mallory writes {', '.join(parts)}, {how}"

    @property
    def size(self) -> int:
        """Chains made available (a rewrite without a notify: the descriptors it rewrites)."""
        return len(self.heads) if self.heads else len(self.descs)

    def items(self) -> list[tuple[int, int]]:
        return [(int(r["addr"][0]), int(r["len"][0])) for _, r in self.descs]

    def keep(self, positions: list[int]) -> Step:
        return replace(self, descs=tuple(self.descs[i] for i in positions))

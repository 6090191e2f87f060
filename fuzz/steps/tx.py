"""TX steps: descriptors at mallory's TX tail and a doorbell (``tx``, with an optional race), and a fake ring.

A TX descriptor in a reproducer is ``{"addr": "0x7000", "length": 128,
"cmd": 11}`` (``cso`` and ``css`` when not zero): the fields of the e1000
legacy TX descriptor (``ring.descriptors.TX_DESC``), each within its width
(64-bit address, 16-bit length, byte-wide command and checksum offsets).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from fuzz.arena import RING
from fuzz.steps.base import Step
from fuzz.steps.mutation import mutate_descs
from fuzz.steps.spec import U8, U16, U64, Int, Key, ListOf, Record, ReproducerError, u
from ring.descriptors import DESC_SIZE, TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PAGE_SIZE

if TYPE_CHECKING:
    from fuzz.arena import Arena

GOOD = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
Descs = npt.NDArray[np.void]

#: Where a race's write lands (``Rewrite.point``): after the kernel's check and before the device's read (the
#: TOCTOU window), just before the kernel reads the user descriptors (must be judged like any descriptor), or
#: from a second thread while the threaded engine runs the device (timing decides; not reproducible by seed).
AFTER_CHECK, BEFORE_READ, THREADED = "after_check", "before_read", "threaded"
POINTS = (AFTER_CHECK, BEFORE_READ, THREADED)
#: The op key of a race rewrite, by ``Rewrite.point``.
REWRITE_KEYS = {AFTER_CHECK: "rewrite_after_check", BEFORE_READ: "rewrite_before_read", THREADED: "rewrite_threaded"}
#: How the replay tells when a race's write lands, by point.
MOMENTS = {
    AFTER_CHECK: "after the kernel's check",
    BEFORE_READ: "just before the kernel reads the ring",
    THREADED: "from a second thread, while the device runs,",
}
#: Rounds a threaded race may ask for (the arena runs at most ``THREAD_ROUNDS`` of them).
MAX_ROUNDS = 1_000_000
#: What a raw ``tail`` may be: any operand of a 64-bit store, signed or not.  The doorbell window passes a
#: tenant's store on as given, so a tail no 32-bit register holds (-1, 2**32: a ``writeq`` over TDT) reaches the
#: kernel's trap as it is, and must be refused like any tail outside the ring (RING_TAIL_BEYOND).
TAIL_STORE = (-(2**63), 2**64 - 1)


def tx_batch(
    addr: npt.ArrayLike,
    length: npt.ArrayLike,
    cmd: npt.ArrayLike = GOOD,
    cso: npt.ArrayLike = 0,
    css: npt.ArrayLike = 0,
) -> Descs:
    """Legacy TX descriptors from columns (each masked to its field's width)."""
    addr_a = np.asarray(addr, dtype=np.uint64)
    descs = np.zeros(addr_a.size, dtype=TX_DESC)
    descs["addr"] = addr_a
    descs["length"] = np.asarray(length, dtype=np.int64) & 0xFFFF
    descs["cmd"] = np.asarray(cmd, dtype=np.int64) & 0xFF
    descs["cso"] = np.asarray(cso, dtype=np.int64) & 0xFF
    descs["css"] = np.asarray(css, dtype=np.int64) & 0xFF
    return descs


#: One legacy TX descriptor as a reproducer writes it (status and special are the device's: not written).
DESC = Record(
    {
        "addr": Key(u(U64, "#x")),
        "length": Key(u(U16)),
        "cmd": Key(u(U8), default=0),
        "cso": Key(u(U8), default=0, always=False),
        "css": Key(u(U8), default=0, always=False),
    }
)


def _descs_build(items: list[dict[str, int]]) -> Descs:
    return tx_batch(
        [d["addr"] for d in items],
        [d["length"] for d in items],
        [d["cmd"] for d in items],
        [d["cso"] for d in items],
        [d["css"] for d in items],
    )


def _descs_unbuild(descs: Descs) -> list[dict[str, int]]:
    # (addr, length, cso, cmd, status, css, special)
    return [{"addr": d[0], "length": d[1], "cmd": d[3], "cso": d[2], "css": d[5]} for d in descs.tolist()]


def descs_spec(most: int) -> ListOf:
    """A list of at most ``most`` TX descriptors, read into a ``TX_DESC`` array."""
    return ListOf(DESC, most, _descs_build, _descs_unbuild)


def _show_descs(items: list[dict[str, Any]]) -> str:
    shown = "; ".join(
        f"addr={d['addr']} len={d['length']} cmd={d.get('cmd', 0):#x}"
        + (f" cso={d['cso']}" if "cso" in d else "")
        + (f" css={d['css']}" if "css" in d else "")
        for d in items[:4]
    )
    more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
    return f"{len(items)} descriptor(s): {shown}{more}"


def _keep_descs(descs: Descs, positions: list[int]) -> Descs:
    return descs[np.asarray(positions, dtype=np.int64)] if positions else descs[:0]


class DescriptorStep(Step):
    """A step that writes TX descriptors (``descs``): it counts, mutates and minimises them the same way.

    Its subclasses are frozen dataclasses; ``replace`` on ``self`` is typed for those only, hence the ignores.
    """

    descs: Descs

    @property
    def size(self) -> int:
        return int(self.descs.size)

    def mutate(self, rng: np.random.Generator, share: float) -> Step:
        if not self.descs.size:
            return self
        return replace(self, descs=mutate_descs(rng, self.descs, share))  # type: ignore[type-var]

    def items(self) -> list[tuple[int, int]]:
        return [
            (int(a), int(n)) for a, n in zip(self.descs["addr"].tolist(), self.descs["length"].tolist(), strict=True)
        ]

    def keep(self, positions: list[int]) -> Step:
        return replace(self, descs=_keep_descs(self.descs, positions))  # type: ignore[type-var]


@dataclass(frozen=True)
class Rewrite:
    """A race: what mallory writes into one TX slot of the batch, and when (``point``, one of ``POINTS``)."""

    slot_offset: int  # which descriptor of the batch (0: the first written)
    addr: int | None = None
    length: int | None = None
    point: str = AFTER_CHECK
    rounds: int = 1  # threaded: how many times the batch is posted and rung while the second thread rewrites

    FIELDS: ClassVar[dict[str, Key]] = {
        "slot_offset": Key(Int(0, RING - 1), default=0),
        "addr": Key(u(U64, "#x"), default=None),
        "length": Key(u(U16), default=None),
        "rounds": Key(Int(1, MAX_ROUNDS), default=1),
    }

    def fields(self) -> dict[str, Any]:
        """The values the JSON object holds (``rounds`` only for the threaded race)."""
        rounds = self.rounds if self.point == THREADED else None
        return {"slot_offset": self.slot_offset, "addr": self.addr, "length": self.length, "rounds": rounds}

    def to_json(self) -> dict[str, Any]:
        return REWRITE.dump(self.fields())

    def describe(self) -> str:
        rw = self.to_json()
        fields = ", ".join(f"{k}={rw[k]}" for k in ("addr", "length") if k in rw)
        return f"; {MOMENTS[self.point]} mallory rewrites descriptor {self.slot_offset}: {fields}"


REWRITE = Record(Rewrite.FIELDS)


@dataclass(frozen=True, eq=False)
class Tx(DescriptorStep):
    """Descriptors written at mallory's TX tail, then the doorbell (``Arena.tx``).

    ``tail``: ring that raw value instead of the natural tail (a register
    store, passed on as given: any 64-bit operand, ``TAIL_STORE``);
    ``tail_back``: so many slots behind the natural tail (within the ring).
    ``rewrite``: the race, one per op.
    """

    descs: Descs
    tail: int | None = None
    tail_back: int | None = None
    rewrite: Rewrite | None = None

    kind: ClassVar[str] = "tx"
    VERB: ClassVar[str] = "refused"
    FIELDS: ClassVar[dict[str, Key]] = {
        "descs": Key(descs_spec(RING - 1), default=np.zeros(0, dtype=TX_DESC)),
        "tail": Key(u(TAIL_STORE), default=None),
        "tail_back": Key(Int(1, RING - 1), default=None),
        **{key: Key(REWRITE, default=None) for key in REWRITE_KEYS.values()},
    }

    def __post_init__(self) -> None:
        if self.tail is not None and self.tail_back is not None:
            raise ReproducerError("tx: give tail or tail_back, not both")

    @classmethod
    def build(cls, values: dict[str, Any], where: str) -> Self:
        descs = values["descs"]
        given = [(point, key) for point, key in REWRITE_KEYS.items() if values[key] is not None]
        if len(given) > 1:
            raise ReproducerError(f"{where}: one race per op, got {', '.join(key for _, key in given)}")
        if values["tail"] is not None and values["tail_back"] is not None:
            raise ReproducerError(f"{where}: give tail or tail_back, not both")
        rewrite = None
        if given:
            point, key = given[0]
            rw = values[key]
            if not 0 <= rw["slot_offset"] < max(1, descs.size):
                raise ReproducerError(
                    f"{where}.{key}: slot_offset {rw['slot_offset']} is not one of the {descs.size} descriptors"
                )
            rewrite = Rewrite(rw["slot_offset"], rw["addr"], rw["length"], point=point, rounds=rw["rounds"])
        return cls(descs, values["tail"], values["tail_back"], rewrite)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"descs": self.descs, "tail": self.tail, "tail_back": self.tail_back}
        if self.rewrite is not None:
            out[REWRITE_KEYS[self.rewrite.point]] = self.rewrite.fields()
        return out

    def run(self, arena: Arena) -> None:
        arena.tx(self.descs, self.tail, self.rewrite, self.tail_back)

    def describe(self) -> str:
        op = self.to_json()
        tail = f", tail={self.tail:#x}" if self.tail is not None else ""
        tail = f", tail {self.tail_back} back" if self.tail_back is not None else tail
        race = "" if self.rewrite is None else self.rewrite.describe()
        return f"tx: doorbell after {_show_descs(op['descs'])}{tail}{race}"

    def keep(self, positions: list[int]) -> Step:
        rewrite = self.rewrite
        if rewrite is not None:  # the race follows its slot, or goes with it
            slot = rewrite.slot_offset
            rewrite = replace(rewrite, slot_offset=positions.index(slot)) if slot in positions else None
        return replace(self, descs=_keep_descs(self.descs, positions), rewrite=rewrite)

    def raced(self) -> list[int]:
        return [] if self.rewrite is None else [self.rewrite.slot_offset]


@dataclass(frozen=True, eq=False)
class FakeRing(DescriptorStep):
    """Descriptors written into mallory's scratch page: a ring of her own making, for register attacks."""

    descs: Descs

    kind: ClassVar[str] = "fake_ring"
    FIELDS: ClassVar[dict[str, Key]] = {
        "descs": Key(descs_spec(PAGE_SIZE // DESC_SIZE), default=np.zeros(0, dtype=TX_DESC)),
    }

    def run(self, arena: Arena) -> None:
        arena.fake_ring(self.descs)

    def describe(self) -> str:
        return f"fake ring in mallory's scratch page: {_show_descs(self.to_json()['descs'])}"

    def quiet(self) -> str:
        return "written (no doorbell yet)"

"""Ring geometry at its exact edges: the refusals the tail rules demand, though no byte moves either way.

The device uses its indices modulo the ring size and never fetches past
its tail, so a tail equal to the ring size, a producer a full lap ahead of
the consumer (overrun) or a tail moved back into descriptors in flight move
no byte outside the tenant's pins: the DMA check sees nothing.  The rules
(docs/verifier.md, "Ring indices") still demand a refusal, so the oracle
demands it: the tenant's tail write is refused -- the device's real tail
(its register) does not move during the write -- and audited (one record of
the right RING_* reason more for the queue).  Findings are kind ``"ring"``.

What counts as in flight comes from the oracle's own account, not the
kernel's ``done``: for an RX queue, ``RingModel`` keeps the tenant's slots
the device was given, in order (the consumed slots without a refusal mark,
read from the tenant's ring right after her write), and the device's own
head and tail registers say how many of them it still holds.  A TX queue's
descriptors complete within the doorbell that posts them (inline engine),
so only the tail-beyond rule is judged there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ring import indices
from ring.descriptors import RXD_ERR_REFUSED, RXD_STAT_DD

RING_REASONS = ("RING_TAIL_BEYOND", "RING_TAIL_BACKWARDS", "RING_OVERRUN")


@dataclass
class RingModel:
    """The oracle's account of one RX queue: the tail it took, and the slots the device holds, oldest first."""

    size: int
    tail: int = 0
    given: deque[int] = field(default_factory=deque)

    def done(self, in_flight: int) -> int:
        """The oldest slot not handed back: the oldest of the ``in_flight`` slots the device still holds."""
        while len(self.given) > in_flight:
            self.given.popleft()
        return self.given[0] if self.given else self.tail

    def required(self, value: int, done: int) -> str | None:
        """The refusal a tail write of ``value`` demands (None: it may be taken), by the documented rule."""
        if not 0 <= value < self.size:
            return "RING_TAIL_BEYOND"
        forward = (value - self.tail) % self.size
        if forward <= indices.free(done, self.tail, self.size):
            return None
        return "RING_TAIL_BACKWARDS" if self.size - forward < forward else "RING_OVERRUN"

    def took(self, value: int, ring: npt.NDArray[np.void]) -> None:
        """The kernel took the tail ``value``: the consumed slots without a refusal mark went to the device (RX)."""
        if "errors" not in (ring.dtype.names or ()):  # TX: only the tail is followed
            self.tail = value
            return
        consumed = indices.slots(self.tail, indices.used(self.tail, value, self.size), self.size)
        refused = (
            ((ring["status"][consumed] & np.uint8(RXD_STAT_DD)) != 0)
            & ((ring["errors"][consumed] & np.uint8(RXD_ERR_REFUSED)) != 0)
            & (ring["length"][consumed] == 0)
        )
        self.given.extend(consumed[~refused].tolist())
        self.tail = value


def judge_tail_write(
    nic: str,
    kind: str,
    value: int,
    size: int,
    model: RingModel | None,
    write: Callable[[], None],
    device: Callable[[], tuple[int, int]],
    refusals: Callable[[], dict[str, int] | None],
    ring: npt.NDArray[np.void] | None,
) -> list[tuple[str, str]]:
    """Run the tail write and judge it: ``(reason, account)`` per broken rule.

    ``device`` reads the device's (head, tail) registers; ``refusals`` the queue's audit counts per reason
    (None: no audit to judge).
    """
    head, before = device()
    rx = ring is not None and "errors" in (ring.dtype.names or ())
    done = model.done(indices.used(head, before, size)) if model is not None and rx else None
    need = "RING_TAIL_BEYOND" if not 0 <= value < size else None  # any value: the store is passed on as given
    if need is None and model is not None and done is not None:
        need = model.required(value, done)
    counted = refusals() if need is not None or model is not None else None
    write()
    found: list[tuple[str, str]] = []
    if need is not None:
        _, after = device()
        where = f"{nic} {kind} tail {value:#x} on a {size}-slot ring" + (
            f" (tail {model.tail}, oldest slot in flight {done})"
            if model is not None and done is not None and 0 <= value < size
            else ""
        )
        if after != before:
            found.append((need, f"{where}: the device's tail moved {before} -> {after}"))
        now = refusals()
        if counted is not None and now is not None:
            added = sum(now.get(r, 0) - counted.get(r, 0) for r in RING_REASONS)
            if added != 1:
                found.append((need, f"{where}: {added} RING_* records added, 1 needed"))
    elif done is not None and counted is not None:
        # the mirror: a tail the rules allow must be taken -- a kernel whose ``done`` lags the device (a
        # completion not counted, a slot refused out of order not swept) refuses a tenant her own free slots
        now = refusals()
        if now is not None:
            added = sum(now.get(r, 0) - counted.get(r, 0) for r in RING_REASONS)
            if added:
                found.append(
                    (
                        "the ring rules (a free slot is the tenant's to fill)",
                        f"{nic} {kind} tail {value:#x} on a {size}-slot ring (tail {model.tail if model else -1}, "
                        f"oldest slot in flight {done}) claims no more slots than are free, yet was refused "
                        f"({added} RING_* record(s))",
                    )
                )
    if model is not None and ring is not None and 0 <= value < size:
        now = refusals()
        taken = counted is None or now is None or sum(now.get(r, 0) - counted.get(r, 0) for r in RING_REASONS) == 0
        if taken:
            model.took(value, ring)
    return found

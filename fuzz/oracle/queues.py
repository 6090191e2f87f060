"""Queue ownership: a queue's tail moves only when its owner acts (kind ``queue``).

A write to another tenant's doorbell need not move a byte outside anyone's
pins: the victim's descriptors are valid, so the device sends the victim's
own frames (again) or fetches slots the victim never handed over.  The
escape is the move itself: the device's work on a queue was started by
someone other than the tenant it belongs to.

Ground truth is the device's own registers (TDT and RDT of every queue of
every NIC, read without side effects) and who acted: the arena says which
tenant performs each operation, and the scenario which tenant owns each NIC.
Only a store moves a tail (the device moves heads), so a tail that changed
while tenant T acted, on a NIC T does not own, was moved on T's behalf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fuzz.oracle.escape import Escape
from ring import regs


class RegistersLike(Protocol):
    """What the watch reads of a NIC (duck-typed: the oracle imports nothing of the device).

    ``regs``: the register file as 32-bit words (BAR0 offset / 4), read as data, without side effects: the watch
    takes every tail of a NIC in one indexed read instead of one ``reg`` call per register (about 30 a step).
    """

    @property
    def queues(self) -> int: ...
    @property
    def regs(self) -> npt.NDArray[np.uint32]: ...


class QueueWatch:
    """The tails of every queue of every NIC, compared around each operation of one tenant."""

    def __init__(self, nics: Mapping[str, RegistersLike], owners: Mapping[str, int], names: Mapping[int, str]) -> None:
        self.names = dict(names)
        self.tails = [
            (nic, owners.get(nic, -1), offset, dev)
            for nic, dev in nics.items()
            for base in (regs.TDT, regs.RDT)
            for offset in (regs.queue_reg(base, q) for q in range(dev.queues))
        ]
        #: per NIC: its register file and the words of its tails, in ``tails`` order
        self._files: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp]]] = []
        for dev in nics.values():
            words = [offset >> 2 for _, _, offset, d in self.tails if d is dev]
            self._files.append((dev.regs, np.array(words, dtype=np.intp)))

    def read(self) -> list[int]:
        """Every watched tail now, in ``tails`` order (pass it to ``moved``)."""
        if len(self._files) == 1:
            file, words = self._files[0]
            values: list[int] = file[words].tolist()
            return values
        return [v for file, words in self._files for v in file[words].tolist()]

    def moved(self, actor: int, before: list[int]) -> list[Escape]:
        """Escapes for every tail of a queue ``actor`` does not own that differs from ``before`` (``read``)."""
        now = self.read()
        if now == before:
            return []  # nothing moved (every step but a few)
        found = []
        for (nic, owner, offset, _dev), was, is_ in zip(self.tails, before, now, strict=True):
            if is_ != was and owner != actor:
                who, whose = self.names.get(actor, f"tenant{actor}"), self.names.get(owner, f"tenant{owner}")
                found.append(
                    Escape(
                        "queue",
                        f"{nic} {regs.reg_name(offset)} moved {was} -> {is_} while {who} acted: the queue is {whose}'s",
                        nic,
                        offset,
                        0,
                        whose,
                    )
                )
        return found

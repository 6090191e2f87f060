"""Protection mode ``unsafe-inplace``: check descriptors where they lie, let the device read them there.

Kept on purpose, to show why the snapshot of ``verifier`` mode matters.
The kernel reads the new descriptors from the user ring to check them and
then rings the device, which reads the *same* user memory again, later.
Between the two reads the tenant still owns that memory: a descriptor
rewritten after the check (a time-of-check/time-of-use race) reaches the
device unchecked.  With the threaded engine the race is a matter of timing;
the ``after_check`` hook makes it deterministic.

Rejected descriptors are neutralised in place: a TX descriptor becomes an
empty packet (length 0, EOP, RS), which the device drops without DMA; an RX
descriptor is pointed at a sink frame (charged to the tenant, not mapped
for it), and its slot is completed back
with the refusal mark when the device is done with it.  Both rewrites sit
in tenant memory too, so they are as racy as everything else in this mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ring import indices
from ring.descriptors import (
    RXD_ERR_REFUSED,
    RXD_STAT_DD,
    TXD_CMD_EOP,
    TXD_CMD_RS,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
)
from ring.memory import PAGE_SIZE
from verifier.audit.rejections import record_descriptors
from verifier.modes.base import QueueHandler, QueueRequest
from verifier.modes.protection import Protection
from verifier.modes.shadow import frame_runs
from verifier.modes.trapping import TrappingMode
from verifier.nic_control import program_ring
from verifier.queue_state import QueueState
from verifier.rules.checks import check_rx, check_tx

I64 = npt.NDArray[np.int64]


@dataclass
class InPlaceQueue:
    """One queue whose device ring *is* the user ring."""

    state: QueueState
    tx: bool
    sink_phys: int  # a frame charged to the tenant (not mapped for it) that absorbs neutralised RX DMA
    head: int = 0
    refused: npt.NDArray[np.bool_] = field(init=False)
    frame_first: I64 = field(init=False)
    frame_count: I64 = field(init=False)

    def __post_init__(self) -> None:
        size = self.state.size
        self.refused = np.zeros(size, dtype=bool)
        self.frame_first = np.zeros(size, dtype=np.int64)
        self.frame_count = np.zeros(size, dtype=np.int64)
        self.state.pins.sources.append(self.in_flight)

    def in_flight(self) -> tuple[I64, I64]:
        """Frame runs of descriptors the device may still use (a pin source)."""
        st = self.state
        idx = indices.slots(self.head, indices.used(self.head, st.tail, st.size), st.size)
        return self.frame_first[idx], self.frame_count[idx]

    def doorbell(self, new_tail: int) -> None:
        st = self.state
        with st.lock:
            # The device writes DD itself here, so the tenant may see completions before the
            # interrupt's reap: reap first, or a legitimate tail would look like an overrun.
            self.reap()
            taken = st.take_new(new_tail)  # read to check; the device reads the same memory again later
            if taken is None:
                return
            copy, slots = taken
            ring = st.ring
            k = slots.size
            if self.tx:
                verdicts = check_tx(copy, st.pins, st.owners, st.memory_size, st.policy)
                length = copy["length"].astype(np.int64)
            else:
                verdicts = check_rx(copy["addr"], st.pins, st.owners, st.memory_size, st.policy)
                length = np.full(k, st.policy.rx_buffer_size, dtype=np.int64)
            ok = np.ones(k, dtype=bool) if verdicts is None else ~verdicts.rejected
            send_to = new_tail
            if verdicts is not None and bool(verdicts.held.any()):
                # A packet still open at the tail stays out of the device's reach: the device is rung
                # only up to its first fragment, and the next doorbell reads and judges it again whole.
                first_held = int(np.argmax(verdicts.held))
                send_to = int(slots[first_held])
                ok[first_held:] = False
            if verdicts is not None and bool(verdicts.rejected.any()):
                bad = verdicts.rejected
                self._neutralise(ring, slots[bad])
                record_descriptors(st.audit, st.origin, slots, copy, verdicts, bad,
                                   {"neutralised_in_place": True})  # fmt: skip
            good = slots[ok & (length > 0)]
            if good.size:
                first, count = frame_runs(copy["addr"][ok & (length > 0)], length[ok & (length > 0)])
                self.frame_first[good] = first
                self.frame_count[good] = count
            self.frame_count[slots[~(ok & (length > 0))]] = 0
            moved = send_to != st.tail
            st.tail = send_to
            st.run_after_check()  # <- the window: the tenant still owns what the device will read
            if moved:
                st.bus.write32(st.tail_reg, send_to)
            st.audit.commit()

    def _neutralise(self, ring: npt.NDArray[np.void], slots: I64) -> None:
        self.refused[slots] = True
        if self.tx:
            ring["length"][slots] = 0
            ring["cmd"][slots] = TXD_CMD_EOP | TXD_CMD_RS
            ring["status"][slots] = 0
        else:
            ring["addr"][slots] = self.sink_phys

    def reap(self) -> None:
        st = self.state
        with st.lock:
            device_head = st.bus.read32(st.head_reg)
            n = indices.used(self.head, device_head, st.size)
            if n == 0:
                return
            idx = indices.slots(self.head, n, st.size)
            self.frame_count[idx] = 0
            refused = idx[self.refused[idx]]
            if refused.size:
                ring = st.ring
                if self.tx:
                    ring["status"][refused] = TXD_STAT_DD | TXD_STAT_REFUSED
                else:
                    ring["length"][refused] = 0
                    ring["errors"][refused] = RXD_ERR_REFUSED
                    ring["status"][refused] = RXD_STAT_DD
                self.refused[refused] = False
            self.head = device_head
            st.mark_done(idx)
            st.pins.settle()


class InPlaceMode(TrappingMode):
    """Mode ``unsafe-inplace``: the device ring is the user ring, checked where it lies."""

    protection: ClassVar[Protection] = Protection.UNSAFE_INPLACE

    def open_queue(self, request: QueueRequest) -> QueueHandler | None:
        r = request
        program_ring(r.nic.bus, r.tx, r.index, r.phys, r.size)
        state = r.state()
        # neutralised RX descriptors point here: a frame charged to the tenant, not mapped for it
        sink = r.memory.alloc(PAGE_SIZE, r.tenant)
        return InPlaceQueue(state, r.tx, sink.phys)

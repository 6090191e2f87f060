"""An emulated Intel 8254x-class NIC: register file (BAR0), TX and RX engines, one DMA engine.

Register semantics follow the Software Developer's Manual (317453-006,
section 13): statistics and ICR clear on read; TDLEN/RDLEN ignore bits 6:0
(rings are 128-byte multiples); TDBAL/RDBAL ignore bits 3:0; head and tail
registers are 16 bits; CTRL.RST resets every register and reloads the MAC
address into RAL0/RAH0 from the EEPROM.  Unaligned or out-of-BAR accesses
read as all ones, as a PCI master abort does.

Engine modes: ``inline`` runs the TX engine inside the TDT write and the RX
engine inside the frame's arrival (deterministic); ``threaded`` only stores
the register and lets a poller thread (device/poller.py) do the work.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from device import fastdev
from device.counters import DeviceCounters
from device.dma import DmaEngine
from device.rx_engine import MAX_STD_FRAME, RxEngine
from device.tx_engine import TxEngine
from device.wire import Port
from ring import regs
from ring.descriptors import ETH_FCS_LEN
from ring.frames import FrameBatch, rows_at
from ring.memory import PhysicalMemory

REG_COUNT = regs.BAR0_SIZE // regs.REG_WIDTH
_ICR, _IMS = regs.ICR >> 2, regs.IMS >> 2  # word indices of the two registers every interrupt touches
_HEAD_TAIL = frozenset((regs.TDH, regs.TDT, regs.RDH, regs.RDT))
U32 = 0xFFFF_FFFF
ALL_ONES = U32

#: The 64-bit statistics kept as low/high register pairs.
_STAT64 = {regs.GORCL: regs.GORCH, regs.GOTCL: regs.GOTCH, regs.TORL: regs.TORH, regs.TOTL: regs.TOTH}
_STAT64_HIGH = {high: low for low, high in _STAT64.items()}
RAL_ENTRIES = 16  # RAL0/RAH0 .. RAL15/RAH15, 8 bytes apart
BROADCAST = 0xFFFF_FFFF_FFFF
#: Threaded mode only: the receive packet buffer between wire and DMA (8254x PBA default, 48 KiB).
RX_FIFO_BYTES = 48 * 1024


class EngineMode(StrEnum):
    INLINE = "inline"
    THREADED = "threaded"


#: The inline engine, for the hot paths' ``is`` test (an enum member is a class attribute lookup each time, about
#: 80 ns on CPython 3.11; a module global is one dict probe)
_INLINE = EngineMode.INLINE


def mac_to_regs(mac: bytes) -> tuple[int, int]:
    """RAL/RAH values for a MAC address (RAL: bytes 0-3, RAH: bytes 4-5 and AV)."""
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    return int.from_bytes(mac[:4], "little"), int.from_bytes(mac[4:], "little") | regs.RAH_AV


class E1000:
    """One emulated NIC with ``queues`` TX and RX queues (the 8254x has one of each)."""

    def __init__(
        self,
        name: str,
        memory: PhysicalMemory,
        mac: bytes,
        queues: int = 1,
        mode: EngineMode = EngineMode.INLINE,
    ) -> None:
        if not 1 <= queues <= 8:
            raise ValueError("an e1000-class NIC has 1 to 8 queues")
        self.name = name
        self.mac = bytes(mac)
        self.queues = queues
        self.mode = mode
        self.regs = np.zeros(REG_COUNT, dtype=np.uint32)
        self.fast = fastdev.enabled()
        self.dma = DmaEngine(memory, name)
        self.counters = DeviceCounters()
        self.port = Port(name, self.receive, self.pause_room, self.resume, self.arrive)
        self.tx = [TxEngine(self, q) for q in range(queues)]
        self.rx = [RxEngine(self, q) for q in range(queues)]
        self.lock = threading.RLock()
        self.inbound: deque[FrameBatch] = deque()
        self._inbound_bytes = 0
        self._inbound_frames = 0  # frames in ``inbound`` (read by the partner's transmitter under flow control)
        self._ral_cache: list[tuple[int, int]] | None = None
        self._unicast: npt.NDArray[np.uint8] | None = None  # the first entry of _ral_cache, as 6 bytes
        self.stats: defaultdict[int, int] = defaultdict(int)  # counted as Python ints, shown through the BAR
        self.irq: Callable[[], None] | None = None  # the interrupt line, connected by the composition root
        self._irq_pending = False
        self._irq_running = 0  # threaded: interrupt handlers still running (the device is not idle yet)
        self.pausing = False  # flow control: this port has sent XOFF (its receive ring is full)
        self.paused = False  # flow control: the link partner's XOFF holds this port's transmitter
        #: offset -> (queue-0 register, queue) for every per-queue ring register of this device
        self._ring_regs = {
            regs.queue_reg(base, q): (base, q) for base in regs.TX_RING_REGS + regs.RX_RING_REGS for q in range(queues)
        }
        #: offset -> (register word, TX engine) of every queue's TDT, (word, None) of every RDT: the doorbells
        self._tail_regs: dict[int, tuple[int, TxEngine | None]] = {
            regs.queue_reg(regs.TDT, q): (regs.queue_reg(regs.TDT, q) >> 2, self.tx[q]) for q in range(queues)
        } | {regs.queue_reg(regs.RDT, q): (regs.queue_reg(regs.RDT, q) >> 2, None) for q in range(queues)}
        #: offset -> register word of every queue's TDH and RDH: what an interrupt handler reads (``read32``)
        self._head_words = {
            regs.queue_reg(base, q): regs.queue_reg(base, q) >> 2
            for base in (regs.TDH, regs.RDH)
            for q in range(queues)
        }
        self.reset()

    # -- raw register state (no side effects) --------------------------------
    def reg(self, offset: int) -> int:
        return int(self.regs[offset >> 2])

    def set_reg(self, offset: int, value: int) -> None:
        self.regs[offset >> 2] = value & U32

    def reset(self) -> None:
        """CTRL.RST: every register to its default, the MAC reloaded from the EEPROM."""
        with self.lock:
            self.regs[:] = 0
            ral, rah = mac_to_regs(self.mac)
            self.set_reg(regs.RAL0, ral)
            self.set_reg(regs.RAH0, rah)
            self.set_reg(regs.STATUS, regs.STATUS_FD)
            for engine in self.tx:
                engine.partial.clear()
                engine.stalled_at = None
            self.inbound.clear()
            self._inbound_bytes = 0
            self._inbound_frames = 0
            self.pausing = self.paused = False
            self._ral_cache = None
            self.stats.clear()

    # -- the BAR, as the bus sees it -----------------------------------------
    def _bad_access(self) -> int:
        """An unaligned or out-of-BAR access: counted, and read as a master abort reads (all ones)."""
        self.counters.bad_register_access += 1
        return ALL_ONES

    def read32(self, offset: int) -> int:
        head = self._head_words.get(offset)
        if head is not None:
            # The interrupt handler's read of TDH/RDH, once per completion batch: a head register has no read
            # side effect, and every engine path here moves it only after writing back the descriptors it
            # passes, so the word is read without the device lock (a CPU's MMIO read does not wait for the
            # device either; a reader racing a burst sees the old head or the new one, both consistent).
            return self.regs.item(head)  # ``item``: a Python int without a numpy scalar first (half the cost)
        if offset % regs.REG_WIDTH or not 0 <= offset < regs.BAR0_SIZE:
            return self._bad_access()
        with self.lock:
            if regs.STATS_FIRST <= offset <= regs.STATS_LAST:
                return self._read_stat(offset)
            value = int(self.regs[offset >> 2])
            if offset == regs.ICR:
                self.regs[offset >> 2] = 0
            return value

    def mapped_word(self, offset: int) -> npt.NDArray[np.uint32] | None:
        """The register word at ``offset`` as a one-word view a kernel may read directly, or None.

        Only the heads (TDH/RDH): ``read32`` answers them from this word already, without the lock and with no
        side effect, so a reader of the view sees exactly what ``read32`` returns.  The interrupt handler's
        compiled reap reads its queue's head here (verifier/modes/shadow.py), as a driver reads a head that
        82576/ixgbe TX head write-back (``TDWBAL``) puts in host memory, without a bus access.  The view stays
        valid for the device's life: the register file is only ever written in place.
        """
        word = self._head_words.get(offset)
        return None if word is None else self.regs[word : word + 1]

    def write32(self, offset: int, value: int) -> None:
        tail = self._tail_regs.get(offset)
        if tail is not None:  # the doorbells first, one 16-bit store each: they are the hot ones
            word, engine = tail
            lock = self.lock
            lock.acquire()  # acquire/release: a ``with`` costs about twice as much on CPython 3.11
            try:
                self.regs[word] = value & 0xFFFF
                if engine is None:  # RDT
                    if self.pausing:
                        self._maybe_xon()
                elif self.mode is _INLINE:  # TDT
                    engine.run()
            finally:
                lock.release()
            return
        if offset % regs.REG_WIDTH or not 0 <= offset < regs.BAR0_SIZE:
            self._bad_access()
            return
        value &= U32
        with self.lock:
            ring = self._ring_regs.get(offset)
            if ring is not None:
                self._write_ring_reg(offset, value, ring[0])
                return
            if offset == regs.CTRL:
                if value & regs.CTRL_RST:
                    self.reset()
                    return
                self.set_reg(offset, value)
                self._update_link()
            elif offset == regs.STATUS or regs.STATS_FIRST <= offset <= regs.STATS_LAST:
                return  # read-only
            elif offset == regs.ICR:
                self.set_reg(offset, self.reg(offset) & ~value)
            elif offset == regs.ICS:
                self.raise_irq(value)
            elif offset == regs.IMS:
                self.set_reg(offset, self.reg(offset) | value)
            elif offset == regs.IMC:
                self.set_reg(regs.IMS, self.reg(regs.IMS) & ~value)
            elif offset == regs.TCTL:
                self.set_reg(offset, value)
                if self.mode is EngineMode.INLINE:
                    for engine in self.tx:
                        engine.run()
            else:
                if regs.RAL0 <= offset < regs.RAL0 + 8 * RAL_ENTRIES:
                    self._ral_cache = None
                self.set_reg(offset, value)

    def _write_ring_reg(self, offset: int, value: int, base: int) -> None:
        """Per-queue ring registers but the doorbells (``write32``): base (bits 3:0 ignored), length (bits 6:0
        ignored), 16-bit head."""
        if base in _HEAD_TAIL:
            self.regs[offset >> 2] = value & 0xFFFF
        elif base in (regs.TDLEN, regs.RDLEN):
            if value & (regs.RING_LEN_ALIGN - 1):
                self.counters.ring_len_misaligned += 1
            self.set_reg(offset, value & regs.RING_LEN_MASK)
        elif base in (regs.TDBAL, regs.RDBAL):
            self.set_reg(offset, value & ~0xF)
        else:
            self.set_reg(offset, value)

    def _update_link(self) -> None:
        up = bool(self.reg(regs.CTRL) & regs.CTRL_SLU) and self.port.connected
        status = self.reg(regs.STATUS)
        new = (status | regs.STATUS_LU) if up else (status & ~regs.STATUS_LU)
        if new != status:
            self.set_reg(regs.STATUS, new)
            self.raise_irq(regs.ICR_LSC)

    # -- interrupts and statistics -------------------------------------------
    def raise_irq(self, cause: int) -> None:
        """Set ICR causes; an unmasked cause signals the interrupt line (MSI to the kernel).

        Inline, the handler runs at once (inside the register write that
        caused it, as if the CPU took the interrupt immediately).  Threaded,
        it runs from ``poll`` after the device lock is released, so a kernel
        that holds its own lock and writes a register cannot deadlock with it.
        """
        r = self.regs
        r[_ICR] = r.item(_ICR) | cause  # Python ints (``item``): no numpy scalar arithmetic on every interrupt
        irq = self.irq  # loaded, then called: ``self.irq()`` (a callable in an attribute) is never specialised
        if irq is not None and cause & r.item(_IMS):
            if self.mode is _INLINE:
                irq()
            else:
                self._irq_pending = True

    def count_stat(self, offset: int, n: int) -> None:
        """Add to a statistics counter (kept as a Python int, shown through the BAR on read)."""
        self.stats[offset] += n

    def _read_stat(self, offset: int) -> int:
        """Clear-on-read statistics.  A 64-bit pair reads low then high; reading high clears both."""
        high_of = _STAT64_HIGH.get(offset)
        if high_of is not None:  # the high half of a pair
            value = self.stats.pop(high_of, 0)
            return (value >> 32) & U32
        if offset in _STAT64:
            return self.stats.get(offset, 0) & U32
        return min(self.stats.pop(offset, 0), U32)

    def count_tx(self, frames: int, nbytes: int) -> None:
        """Good packets and octets transmitted (the octets with the FCS the MAC appends)."""
        octets = nbytes + ETH_FCS_LEN * frames
        stats = self.stats
        stats[regs.GPTC] += frames
        stats[regs.TPT] += frames
        stats[regs.GOTCL] += octets
        stats[regs.TOTL] += octets

    def count_rx(self, frames: int, octets: int) -> None:
        stats = self.stats
        stats[regs.GPRC] += frames
        stats[regs.TPR] += frames
        stats[regs.GORCL] += octets
        stats[regs.TORL] += octets

    # -- 802.3x flow control (manual 3.5: FCAL/FCAH/FCT, CTRL.RFCE/TFCE) -------
    def pause_room(self) -> int | None:
        """Frames this port accepts now, if it pauses its partner (CTRL.TFCE); None if it never sends PAUSE.

        Real silicon sends XOFF when its receive FIFO passes FCRTH, which it
        does once no receive descriptor is left; the headroom above FCRTH
        absorbs what is already on the wire.  Here the pause takes effect at
        once and room is counted in free receive descriptors (queue 0's, or
        the fullest queue's), less frames still in the threaded engine's FIFO.
        """
        if not self.reg(regs.CTRL) & regs.CTRL_TFCE:
            return None
        room = min(engine.free_descriptors() for engine in self.rx)
        room = max(0, room - self._inbound_frames)
        if room == 0 and not self.pausing:
            self.pausing = True
            self.count_stat(regs.XOFFTXC, 1)
        return room

    def _maybe_xon(self) -> None:
        """The tenant gave receive descriptors back while this port had its partner paused: send XON."""
        if min(engine.free_descriptors() for engine in self.rx) == 0:
            return
        self.pausing = False
        self.count_stat(regs.XONTXC, 1)
        if self.mode is EngineMode.INLINE:  # threaded: the poller runs the partner's transmitter anyway
            self.port.resume_partner()

    def resume(self) -> None:
        """XON from the link partner (inline engine): transmit what the pause held."""
        with self.lock:
            for engine in self.tx:
                engine.run()

    def partner_room(self) -> int | None:
        """Frames the transmitter may send now: None unless CTRL.RFCE and the partner sends PAUSE.

        Counts XOFFRXC when a pause starts to hold the transmitter and XONRXC when it ends.
        """
        if not self.reg(regs.CTRL) & regs.CTRL_RFCE:
            return None
        room = self.port.partner_room()
        if room == 0 and not self.paused:
            self.paused = True
            self.count_stat(regs.XOFFRXC, 1)
        elif room and self.paused:
            self.paused = False
            self.count_stat(regs.XONRXC, 1)
        return room

    # -- the MAC side ---------------------------------------------------------
    def receive(self, frames: FrameBatch) -> None:
        """Frames arriving from the wire (the port's ``deliver``)."""
        if self.mode is EngineMode.INLINE:
            with self.lock:
                self._receive_now(frames)
            return
        with self.lock:
            if self._inbound_bytes + frames.nbytes > RX_FIFO_BYTES:
                self.count_stat(regs.MPC, len(frames))
                self.raise_irq(regs.ICR_RXO)
                return
            self.inbound.append(frames)
            self._inbound_bytes += frames.nbytes
            self._inbound_frames += len(frames)

    def arrive(self, n: int, data: Any, lengths: Any) -> bool:
        """A burst from the link partner's compiled kick, still in its scratch (the port's ``arrive``).

        The inline engine of a one-queue NIC places it compiled when it is the
        plain case (RxEngine.arrive); False (nothing done) sends it the
        ``receive`` way, as a FrameBatch: the threaded engine's FIFO, queue
        steering, the filter's and the placement's other answers.
        """
        if self.mode is not _INLINE or self.queues != 1:
            return False
        lock = self.lock
        lock.acquire()  # not ``with``: see ``write32``
        try:
            return self.rx[0].arrive(n, data, lengths)
        finally:
            lock.release()

    def _receive_now(self, frames: FrameBatch) -> None:
        if self.fast is None and self.queues == 1 and self.rx[0].arrive_batch(frames):
            return  # the plain arrival, as a handful of numpy operations
        rctl = self.reg(regs.RCTL)
        if not rctl & regs.RCTL_EN or not self.reg(regs.STATUS) & regs.STATUS_LU:
            self.counters.rx_disabled += len(frames)
            return
        frames = self._filter(frames, rctl)
        if len(frames) == 0:
            return
        if self.queues == 1:
            self.rx[0].place(frames)
            return
        queue = self._steer(frames)
        for q in range(self.queues):
            mine = queue == q
            if bool(mine.any()):
                keep = np.repeat(mine, frames.lengths)
                self.rx[q].place(FrameBatch(frames.data[keep], frames.lengths[mine]))

    @staticmethod
    def _dest_keys(frames: FrameBatch) -> npt.NDArray[np.uint64]:
        """Destination MAC of each frame as a 48-bit integer (frames shorter than 6 bytes: 0)."""
        if len(frames) == 0:
            return np.zeros(0, dtype=np.uint64)
        offsets = frames.offsets
        if int(frames.lengths.min()) >= 8:
            # read 8 bytes per frame as one big-endian word; the top 48 bits are the destination
            return rows_at(frames.data, offsets, 8).view(">u8").ravel().astype(np.uint64) >> np.uint64(16)
        keys = np.zeros(len(frames), dtype=np.uint64)
        for i, frame in enumerate(frames):
            if len(frame) >= 6:
                keys[i] = int.from_bytes(frame[:6], "big")
        return keys

    def _ral_table(self) -> list[tuple[int, int]]:
        """Valid receive addresses as (48-bit integer, RAL index); rebuilt when RAL/RAH change."""
        if self._ral_cache is None:
            table = []
            for i in range(RAL_ENTRIES):
                rah = self.reg(regs.RAH0 + 8 * i)
                if rah & regs.RAH_AV:
                    raw = self.reg(regs.RAL0 + 8 * i).to_bytes(4, "little") + (rah & 0xFFFF).to_bytes(2, "little")
                    table.append((int.from_bytes(raw, "big"), i))
            self._ral_cache = table
            self._unicast = None if not table else np.frombuffer(table[0][0].to_bytes(6, "big"), np.uint8)
        return self._ral_cache

    def unicast_address(self) -> npt.NDArray[np.uint8] | None:
        """The first valid receive address (RAL/RAH with AV) in wire order, or None: the filter's common match."""
        self._ral_table()
        return self._unicast

    def _filter(self, frames: FrameBatch, rctl: int) -> FrameBatch:
        """Address filter (unicast RAL match, broadcast with BAM, promiscuous modes) and ROC."""
        table = self._ral_table()
        if table and self._all_to(frames, table[0][0], 0 if rctl & regs.RCTL_LPE else MAX_STD_FRAME):
            return frames  # the common case, decided in one compiled pass
        lengths = frames.lengths
        too_long: npt.NDArray[np.bool_] | None = None
        if not rctl & regs.RCTL_LPE and lengths.size and int(lengths.max()) > MAX_STD_FRAME:
            too_long = lengths > MAX_STD_FRAME
            self.counters.rx_oversize += int(np.count_nonzero(too_long))
            self.count_stat(regs.ROC, int(np.count_nonzero(too_long)))
        key = self._dest_keys(frames)
        if rctl & regs.RCTL_UPE and rctl & regs.RCTL_MPE:
            accept = np.ones(len(frames), dtype=bool)
        else:
            accept = key == np.uint64(table[0][0]) if table else np.zeros(len(frames), dtype=bool)
            for mac, _index in table[1:]:
                accept |= key == np.uint64(mac)
            if too_long is None and bool(accept.all()):
                return frames  # the common case: every frame is for this NIC
            multicast = (key >> np.uint64(40)) & np.uint64(1) == 1
            broadcast = key == np.uint64(BROADCAST)
            accept |= broadcast & bool(rctl & regs.RCTL_BAM)
            accept |= multicast & ~broadcast & bool(rctl & regs.RCTL_MPE)
            accept |= ~multicast & bool(rctl & regs.RCTL_UPE)
        if too_long is not None:
            self.counters.rx_filtered += int(np.count_nonzero(~accept & ~too_long))
            accept &= ~too_long
        else:
            self.counters.rx_filtered += int(np.count_nonzero(~accept))
        if bool(accept.all()):
            return frames
        return FrameBatch(frames.data[np.repeat(accept, lengths)], lengths[accept])

    def _all_to(self, frames: FrameBatch, mac: int, max_len: int) -> bool:
        """Every frame is addressed to ``mac`` and no longer than ``max_len`` if not 0 (compiled; False without)."""
        fast = self.fast
        if fast is None or len(frames) == 0:
            return False
        data, lengths = fastdev.batch_pointers(fast, frames)
        return bool(fast.lib.all_addressed_to(data, lengths, len(frames), mac.to_bytes(6, "big"), max_len))

    def _steer(self, frames: FrameBatch) -> npt.NDArray[np.int64]:
        """Queue of each frame: the index of the RAL entry it matched (VMDq-style), else 0."""
        key = self._dest_keys(frames)
        queue = np.zeros(len(frames), dtype=np.int64)
        for mac, index in self._ral_table():
            if index < self.queues:
                queue[key == np.uint64(mac)] = index
        return queue

    # -- the threaded engine's work loop ---------------------------------------
    def poll(self) -> int:
        """One round of device work (threaded mode): pending TX, then buffered RX."""
        work = 0
        with self.lock:
            for engine in self.tx:
                work += engine.run()
            while self.inbound:
                frames = self.inbound.popleft()
                self._inbound_bytes -= frames.nbytes
                self._inbound_frames -= len(frames)
                self._receive_now(frames)
                work += len(frames)
            signal, self._irq_pending = self._irq_pending, False
            self._irq_running += signal
        if signal:
            try:
                if self.irq is not None:
                    self.irq()
            finally:
                with self.lock:
                    self._irq_running -= 1
        return work

    def busy(self) -> bool:
        """Work is pending: buffered frames, or a TX queue whose head has not reached its tail."""
        with self.lock:  # waits for a poll in progress: its frames have left ``inbound`` but are not placed yet
            return bool(self.inbound) or self._irq_pending or self._irq_running > 0 or any(e.pending for e in self.tx)

    def attach(self) -> None:
        """Re-evaluate link state after a wire was plugged into the port."""
        with self.lock:
            self._update_link()

"""An emulated virtio-net device on the virtio-mmio transport (virtio 1.2 §4.2, §5.1).

It plugs into the same machine as the e1000 model: the same ``PhysicalMemory``
through its own ``DmaEngine`` (the one DMA door the oracle watches), a ``Port``
on a ``Cable``, and an interrupt line the composition root connects to the
kernel.  Two virtqueues, as §5.1.2 numbers them: receiveq1 (0) and
transmitq1 (1).  A write of a queue's index to ``QueueNotify`` (0x050) is the
doorbell; the device then runs inline, as the e1000 model's inline engine
does:

* TX (§5.1.6.2): take the new available chains, gather each chain's
  device-readable bytes, strip the 12-byte ``virtio_net_hdr``, send the
  frames on the cable as one burst, return every chain with ``len`` 0 in the
  used ring (the device wrote nothing into it), interrupt.
* RX (§5.1.6.3-4): for each frame that arrives, take one available chain,
  write a ``virtio_net_hdr`` (``num_buffers`` 1: no VIRTIO_NET_F_MRG_RXBUF)
  followed by the frame into its device-writable buffers, return it with the
  bytes written, interrupt.  A frame with no chain available is missed
  (``missed``, e1000's MPC); a frame longer than its chain's writable room is
  dropped without taking the chain (``counters.rx_too_big``).

Hostile input never crashes or hangs the device: a chain it cannot follow
marks it ``DEVICE_NEEDS_RESET`` (device/virtq.py) and it stops taking chains
until the driver resets it, as QEMU does.  The device does not know which
protection mode runs: in ``verifier`` the kernel has pointed its queues at a
shadow virtqueue in kernel memory and it walks that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from device.dma import DmaEngine
from device.virtq import ChainError, DeviceQueue, fetch_heads, fetch_table, publish_used, walk_burst
from device.wire import Port
from ring import virtio as V
from ring.frames import FrameBatch, range_index
from ring.memory import PhysicalMemory

U32 = 0xFFFF_FFFF
#: What an unimplemented register reads (a write to one is ignored and counted).
VENDOR = 0x1AF4  # the PCI vendor ID virtio devices carry (Red Hat, Inc.), reused by virtio-mmio devices


@dataclass
class VirtioCounters:
    """Counted answers to hostile or undefined input (docs/device.md)."""

    bad_register_access: int = 0  # unaligned, out-of-window or read-only register access
    bad_queue_num: int = 0  # QueueNum not a power of 2 up to QueueNumMax: ignored
    notify_not_ready: int = 0  # a notify before DRIVER_OK, for a queue not ready, or while broken
    broken: int = 0  # chains that made the device mark itself DEVICE_NEEDS_RESET
    dma_errors: int = 0  # a chain's buffer access was blocked: its frame is dropped
    tx_short: int = 0  # a TX chain with fewer readable bytes than a virtio_net_hdr: dropped
    rx_too_big: int = 0  # a frame longer than the chain's writable room: dropped
    rx_not_ready: int = 0  # frames that arrived before the receive queue was ready

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class VirtioNet:
    """One virtio-net device on virtio-mmio: the register window is its ``RegisterBus``."""

    def __init__(self, name: str, memory: PhysicalMemory, mac: bytes) -> None:
        if len(mac) != 6:
            raise ValueError("a MAC address has 6 bytes")
        self.name = name
        self.mac = bytes(mac)
        self.dma = DmaEngine(memory, name)
        self.port = Port(name, self.receive)
        self.counters = VirtioCounters()
        self.irq: Callable[[], None] | None = None  # connected by the composition root
        self.queues = [DeviceQueue(V.RECEIVEQ, purpose="rx"), DeviceQueue(V.TRANSMITQ, purpose="tx")]
        self.missed = 0  # frames that found no available receive chain (e1000's MPC)
        self.broken_reason = ""
        header = np.zeros(1, dtype=V.VIRTIO_NET_HDR)
        header["num_buffers"] = 1  # §5.1.6.4: without MRG_RXBUF every frame is one buffer (chain)
        self._rx_header = header.view(np.uint8)
        self.reset()

    def reset(self) -> None:
        """Status 0: the device forgets its features and queues (§2.1, §4.2.3.1)."""
        self.status = 0
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.interrupt_status = 0
        for q in self.queues:
            q.reset()

    def attach(self) -> None:
        """Nothing to do: a virtio-net link is up while a cable is in the port (no VIRTIO_NET_F_STATUS)."""

    # -- the register window ----------------------------------------------------------------------------
    def _queue(self) -> DeviceQueue | None:
        return self.queues[self.queue_sel] if 0 <= self.queue_sel < len(self.queues) else None

    def read32(self, offset: int) -> int:
        if offset % 4 or not 0 <= offset < V.MMIO_SIZE:
            self.counters.bad_register_access += 1
            return U32
        q = self._queue()
        simple = {
            V.MAGIC_VALUE: V.MMIO_MAGIC,
            V.VERSION: V.MMIO_VERSION,
            V.DEVICE_ID: V.VIRTIO_ID_NET,
            V.VENDOR_ID: VENDOR,
            V.DEVICE_FEATURES_REG: (V.DEVICE_FEATURES >> (32 * self.device_features_sel)) & U32
            if self.device_features_sel < 2
            else 0,
            V.QUEUE_NUM_MAX: V.DEVICE_QUEUE_NUM_MAX if q is not None else 0,
            V.QUEUE_READY: int(q.ready) if q is not None else 0,
            V.INTERRUPT_STATUS: self.interrupt_status,
            V.STATUS: self.status,
            V.CONFIG_GENERATION: 0,
        }
        if offset in simple:
            return simple[offset]
        if offset >= V.CONFIG:
            config = self.mac + b"\x00\x00" + bytes(V.MMIO_SIZE - V.CONFIG - 8)
            at = offset - V.CONFIG
            return int.from_bytes(config[at : at + 4], "little")
        self.counters.bad_register_access += 1
        return 0

    def write32(self, offset: int, value: int) -> None:
        value &= U32
        if offset == V.QUEUE_NOTIFY:
            self.notify(value)
            return
        q = self._queue()
        if offset == V.STATUS:
            self._write_status(value)
        elif offset == V.DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif offset == V.DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif offset == V.DRIVER_FEATURES_REG and self.driver_features_sel < 2:
            shift = 32 * self.driver_features_sel
            self.driver_features = (self.driver_features & ~(U32 << shift)) | (value << shift)
        elif offset == V.QUEUE_SEL:
            self.queue_sel = value
        elif offset == V.INTERRUPT_ACK:
            self.interrupt_status &= ~value
        elif q is not None and offset in _QUEUE_REGS:
            self._write_queue(q, offset, value)
        else:
            self.counters.bad_register_access += 1

    def _write_status(self, value: int) -> None:
        if value == 0:
            self.reset()
            return
        if value & V.STATUS_FEATURES_OK and self.driver_features & ~V.DEVICE_FEATURES:
            value &= ~V.STATUS_FEATURES_OK  # §2.2.2: features the device did not offer: FEATURES_OK stays clear
        self.status = (self.status & V.STATUS_DEVICE_NEEDS_RESET) | value

    def _write_queue(self, q: DeviceQueue, offset: int, value: int) -> None:
        if offset == V.QUEUE_NUM:
            if not 1 <= value <= V.DEVICE_QUEUE_NUM_MAX or value & (value - 1):
                self.counters.bad_queue_num += 1
                return
            q.num = value
        elif offset == V.QUEUE_READY:
            q.ready = bool(value & 1) and q.num > 0
            if q.ready:
                q.last_avail = q.used_idx = 0
        else:
            name, high = _QUEUE_REGS[offset]
            old = getattr(q, name)
            new = (old & U32) | (value << 32) if high else (old & ~U32) | value
            setattr(q, name, new)

    # -- the doorbell -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return bool(self.status & V.STATUS_DRIVER_OK) and not self.status & V.STATUS_DEVICE_NEEDS_RESET

    def notify(self, queue: int) -> None:
        """QueueNotify: the driver made chains available on ``queue``."""
        q = self.queues[queue] if 0 <= queue < len(self.queues) else None
        if q is None or not q.ready or not self.running:
            self.counters.notify_not_ready += 1
            return
        if queue == V.TRANSMITQ:
            self._transmit(q)
        # receiveq: new buffers wait for frames (nothing is queued inside the device)

    def _broken(self, err: ChainError) -> None:
        """QEMU's virtio_error: set DEVICE_NEEDS_RESET, tell the driver (a config interrupt), stop."""
        self.counters.broken += 1
        self.broken_reason = str(err)
        self.status |= V.STATUS_DEVICE_NEEDS_RESET
        self._interrupt(V.VIRTIO_MMIO_INT_CONFIG)

    def _interrupt(self, cause: int) -> None:
        self.interrupt_status |= cause
        if self.irq is not None:
            self.irq()

    def _transmit(self, q: DeviceQueue) -> None:
        try:
            heads = fetch_heads(self.dma, q)
            if heads.size == 0:
                return
            table = fetch_table(self.dma, q)
        except ChainError as err:
            self._broken(err)
            return
        burst, error = walk_burst(self.dma, q, table, heads)
        n = burst.chains
        if n:
            chain, addr, length = burst.side(write=False)
            data, ok = self.dma.read(q.index, "tx-data", addr, length)  # the whole burst: one access batch
            moved = np.where(ok, length, 0)
            per_chain = np.bincount(chain, weights=moved, minlength=n).astype(np.int64)
            blocked = np.bincount(chain, weights=~ok, minlength=n) > 0
            short = ~blocked & (per_chain <= V.VIRTIO_NET_HDR_SIZE)
            self.counters.dma_errors += int(np.count_nonzero(blocked))
            self.counters.tx_short += int(np.count_nonzero(short))
            good = ~blocked & ~short
            keep = np.repeat(good, per_chain)
            starts = np.cumsum(per_chain) - per_chain
            keep[range_index(starts[good], np.full(int(good.sum()), V.VIRTIO_NET_HDR_SIZE))] = False  # strip headers
            q.last_avail = (q.last_avail + n) & 0xFFFF
            if bool(good.any()):
                self.port.transmit(FrameBatch(data[keep], per_chain[good] - V.VIRTIO_NET_HDR_SIZE))
            publish_used(self.dma, q, heads[:n], np.zeros(n, dtype=np.int64))
            self._interrupt(V.VIRTIO_MMIO_INT_VRING)
        if error:
            self._broken(ChainError(error))

    # -- the wire ---------------------------------------------------------------------------------------
    def receive(self, frames: FrameBatch) -> None:
        """Frames from the cable: one available receive chain each (no MRG_RXBUF), or missed."""
        q = self.queues[V.RECEIVEQ]
        if not q.ready or not self.running:
            self.counters.rx_not_ready += len(frames)
            return
        try:
            heads = fetch_heads(self.dma, q, len(frames))
            table = fetch_table(self.dma, q) if heads.size else None
        except ChainError as err:
            self._broken(err)
            return
        if table is None:
            self.missed += len(frames)
            return
        burst, error = walk_burst(self.dma, q, table, heads)
        n = burst.chains
        chain, addr, length = burst.side(write=True)
        room = np.bincount(chain, weights=length, minlength=n).astype(np.int64)
        need = frames.lengths + V.VIRTIO_NET_HDR_SIZE
        taken: list[int] = []  # frame j goes to chain len(taken) (chains are taken in order)
        for j, nbytes in enumerate(need.tolist()):
            if len(taken) == n:
                self.missed += len(frames) - j
                break
            if nbytes > int(room[len(taken)]):
                self.counters.rx_too_big += 1  # dropped; the chain waits for the next frame
                continue
            taken.append(j)
        k = len(taken)
        if k:
            picked = np.array(taken, dtype=np.int64)
            payload = need[picked]
            starts = np.cumsum(payload) - payload
            out = np.empty(int(payload.sum()), dtype=np.uint8)
            out[range_index(starts, np.full(k, V.VIRTIO_NET_HDR_SIZE))] = np.tile(self._rx_header, k)
            body = frames.lengths[picked]
            out[range_index(starts + V.VIRTIO_NET_HDR_SIZE, body)] = frames.data[
                range_index(frames.offsets[picked], body)
            ]
            mine = chain < k
            chain, addr, length = chain[mine], addr[mine], length[mine]
            before = np.cumsum(length) - length
            before -= before[np.searchsorted(chain, chain)]  # bytes of earlier buffers of the same chain
            fill = np.clip(payload[chain] - before, 0, length)
            used = fill > 0
            ok = self.dma.write(q.index, "rx-data", addr[used], fill[used], out)
            if not bool(ok.all()):
                self.counters.dma_errors += 1
            q.last_avail = (q.last_avail + k) & 0xFFFF
            publish_used(self.dma, q, heads[:k], payload)
            self._interrupt(V.VIRTIO_MMIO_INT_VRING)
        if error:
            self._broken(ChainError(error))


#: Queue registers of the selected queue: offset -> (DeviceQueue attribute, high word).
_QUEUE_REGS: dict[int, tuple[str, bool]] = {
    V.QUEUE_NUM: ("num", False),
    V.QUEUE_READY: ("ready", False),
    V.QUEUE_DESC_LOW: ("desc", False),
    V.QUEUE_DESC_HIGH: ("desc", True),
    V.QUEUE_DRIVER_LOW: ("driver", False),
    V.QUEUE_DRIVER_HIGH: ("driver", True),
    V.QUEUE_DEVICE_LOW: ("device", False),
    V.QUEUE_DEVICE_HIGH: ("device", True),
}

"""The numpy limit: the least numpy work any design must do to move a batch of 64-byte frames.

Issue 12 states the data path's goal against this probe, measured in the
same run, so that it holds on any machine.  Per batch of B frames it does
only what every design must: the tenant writes B frames into its buffers
and B TX descriptors; the kernel copies the new descriptors once and looks
up the first and last frame of each buffer in the pin table; the device
gathers the B frames to the wire; the receiving device scatters them into
posted RX buffers and writes back length and status; the receiving tenant
reads the status and gathers the frames.  Buffers are chunk-aligned
(2 KiB, DPDK's mbuf data room), so every gather and scatter is a row
gather on a 2-D view of memory, with no per-byte index arrays.  Nothing
here is shared with the project's data path: it is the yardstick, not a
design (no reaping, no interrupts, no wrap of the ring, no refusals).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ring.descriptors import RX_DESC, RXD_STAT_DD, RXD_STAT_EOP, TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PAGE_SHIFT

CHUNK = 2048
FRAME = 64


@dataclass(frozen=True)
class FrameRate:
    """Frames moved at one batch size in a measured time: what the probe and the data path both report."""

    batch: int
    frames: int
    seconds: float

    @property
    def mpps(self) -> float:
        return self.frames / self.seconds / 1e6


def measure(batch: int, min_seconds: float = 1.0) -> FrameRate:
    """Run the minimal pipeline on batches of ``batch`` frames for at least ``min_seconds``."""
    ring_size = max(512, batch)
    memory = np.zeros(2 * ring_size * CHUNK, dtype=np.uint8)  # TX buffers, then RX buffers
    chunks = memory.reshape(-1, CHUNK)  # the 2-D view: one row per buffer
    tx_rows = np.arange(batch, dtype=np.int64)
    rx_rows = tx_rows + ring_size
    frame_ok = np.ones(memory.size >> PAGE_SHIFT, dtype=bool)  # the pin table: frame -> pinned with access
    tx_ring = np.zeros(ring_size, dtype=TX_DESC)
    rx_ring = np.zeros(ring_size, dtype=RX_DESC)
    rx_ring["addr"][:batch] = rx_rows.astype(np.uint64) * np.uint64(CHUNK)
    frames = np.random.default_rng(1).integers(0, 256, (batch, FRAME), dtype=np.uint8)
    tx_addr = tx_rows.astype(np.uint64) * np.uint64(CHUNK)
    cmd = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
    shift = np.uint64(PAGE_SHIFT)
    span = np.uint64(FRAME - 1)

    def one_batch() -> int:
        # tenant: frames into buffers, descriptors into the ring
        chunks[tx_rows, :FRAME] = frames
        tx_ring["addr"][:batch] = tx_addr
        tx_ring["length"][:batch] = FRAME
        tx_ring["cmd"][:batch] = cmd
        # kernel: one snapshot, first and last frame of every buffer in the pin table
        snap = tx_ring[:batch].copy()
        addr = snap["addr"]
        if not bool((frame_ok[addr >> shift] & frame_ok[(addr + span) >> shift]).all()):
            raise AssertionError("the probe's buffers are all pinned")
        # device: gather to the wire, scatter into posted RX buffers, write back length and status
        wire = chunks[(addr // np.uint64(CHUNK)).astype(np.int64), :FRAME]
        rx = rx_ring[:batch]
        chunks[(rx["addr"] // np.uint64(CHUNK)).astype(np.int64), :FRAME] = wire
        rx_ring["length"][:batch] = FRAME
        rx_ring["status"][:batch] = RXD_STAT_DD | RXD_STAT_EOP
        # receiving tenant: read the status, gather the frames
        if not bool((rx_ring["status"][:batch] & RXD_STAT_DD).all()):
            raise AssertionError("every posted buffer was filled")
        got = chunks[rx_rows, :FRAME]
        return int(got.shape[0])

    for _ in range(50):
        one_batch()
    done = rounds = 0
    start = time.perf_counter()
    while True:
        done += one_batch()
        rounds += 1
        if rounds % 64 == 0 and time.perf_counter() - start >= min_seconds:
            break
    return FrameRate(batch, done, time.perf_counter() - start)


if __name__ == "__main__":
    for b in (32, 256):
        r = measure(b)
        print(f"numpy limit, batch {b}: {r.mpps:.2f} Mpps")

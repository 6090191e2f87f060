"""Descriptors checked per second: the vectorised verifier against the one-at-a-time reference.

Both judge the same batch of valid, pinned legacy TX descriptors (the common
case a doorbell brings); the reference is the plain-Python checker the
property tests compare the verifier with (tests/verifier/reference.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ring.descriptors import DESC_SIZE, TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PhysicalMemory
from tests.verifier import reference
from verifier.pins import Access, Pin, PinTable
from verifier.rules import fastpath
from verifier.rules.checks import check_tx
from verifier.rules.policy import Policy

POOL = 512  # buffers of 2048 bytes, pinned for device read


@dataclass(frozen=True)
class CheckRate:
    batch: int
    vectorised: float  # descriptors per second
    reference: float
    compiled: float | None  # snapshot + check + post in verifier/rules/fastpath.c (None: no compiler)

    @property
    def speedup(self) -> float:
        return self.vectorised / self.reference


def _rate(fn: Callable[[], object], batch: int, min_seconds: float) -> float:
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 3:
            return calls * batch / elapsed


def measure(batch: int, min_seconds: float = 0.5) -> CheckRate:
    memory = PhysicalMemory(64 << 20, 4 << 20, seed=1)
    frames = memory.alloc(POOL * 2048, owner=0)
    pins = PinTable(0, memory.frames)
    numbers = np.arange(frames.first, frames.first + frames.count, dtype=np.int64)
    pins.add(Pin(1, 0, 0, frames.nbytes, Access.READ, numbers))
    descs = np.zeros(batch, dtype=TX_DESC)
    descs["addr"] = frames.phys + (np.arange(batch) % POOL) * 2048
    descs["length"] = 60
    descs["cmd"] = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
    policy = Policy()
    if check_tx(descs, pins, memory.owner, memory.size, policy) is not None:
        raise RuntimeError("the bench's batch must be all valid: the vectorised checks refused some")
    world = reference.World(
        tenant=0,
        access={int(f): int(Access.READ) for f in numbers},
        released=frozenset(),
        owners=memory.owner.tolist(),
        memory_size=memory.size,
    )
    plain = [reference.TxDesc(int(d["addr"]), int(d["length"]), int(d["cmd"]), 0, 0) for d in descs]
    if any(v.reason != "OK" for v in reference.check_tx(plain, world, policy)):
        raise RuntimeError("the bench's batch must be all valid: the reference checks refused some")
    vectorised = _rate(lambda: check_tx(descs, pins, memory.owner, memory.size, policy), batch, min_seconds)
    ref = _rate(lambda: reference.check_tx(plain, world, policy), batch, min_seconds)
    return CheckRate(batch, vectorised, ref, _compiled_rate(descs, pins, policy, batch, min_seconds))


def _compiled_rate(descs: np.ndarray, pins: PinTable, policy: Policy, batch: int, min_seconds: float) -> float | None:
    fast = fastpath.enabled()
    consts = policy.tx_fast_path
    if fast is None or consts is None:
        return None
    size = max(8, 1 << (batch).bit_length())  # a ring with room for the batch
    user = np.zeros(size * DESC_SIZE, dtype=np.uint8)
    user.view(TX_DESC)[:batch] = descs
    shadow = np.zeros_like(user)
    snap = np.zeros_like(user)
    to_user = np.zeros(size, dtype=np.int64)
    mask, expect, limit = consts
    args = (
        fast.ptr(user), size, 0, batch, fast.ptr(snap), fast.ptr(pins.frame_ok[int(Access.READ)]), pins.frames,
        int(mask), int(expect), int(limit), fast.ptr(shadow), 0, fast.i64(to_user),
    )  # fmt: skip
    if fast.lib.tx_snapshot_check_post(*args) != 1:
        raise RuntimeError("the compiled fast path refused the bench's all-valid batch")
    return _rate(lambda: fast.lib.tx_snapshot_check_post(*args), batch, min_seconds)

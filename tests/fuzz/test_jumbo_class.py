"""Class ``jumbo`` and the numpy-only rounds: slips the default machine cannot show are found.

Under the default policy no buffer spans more than two frames, so a kernel that judges a buffer by its first
and last frame is exact there; on the ``jumbo`` machine (fuzz/arena.py ``MACHINES``) it is not.  And the
kernel's path without its compiled accelerator runs only on a machine built without it: a campaign's odd
rounds of blocks.  Each weakening is a monkeypatch for one test only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import block_machine, guarded_step, run_campaign
from fuzz.case import Case, replay
from fuzz.classes import CLASSES
from fuzz.jumbo import jumbo_rx, jumbo_tx
from ring import regs
from tests.verifier.compiled import compiled_fast_path
from verifier.audit.memory import MemoryAudit
from verifier.modes import shadow
from verifier.modes.protection import Protection
from verifier.pins import PinTable
from verifier.rules import checks


def test_the_jumbo_machine_is_the_jumbo_policy_on_kernel_device_and_oracle() -> None:
    arena = Arena.build("verifier", 1, MemoryAudit(), machine="jumbo")
    assert arena.kernel.policy.max_buffer == 16288 and arena.kernel.policy.rx_buffer_size == 8192
    rctl = arena.world.nics["nic2"].reg(regs.RCTL)
    assert rctl & regs.RCTL_BSEX and rctl & regs.RCTL_LPE  # BSIZE 8192: what the device may write
    assert arena.oracle.rules is not None and arena.oracle.rules.max_buffer == 16288


def test_a_correct_verifier_gives_nothing_and_refuses_only_the_hidden_ones() -> None:
    arena = Arena.build("verifier", 1, MemoryAudit(), machine="jumbo")
    rng = np.random.default_rng(3)
    found = []
    for i in range(30):
        found += guarded_step(arena, (jumbo_tx if i % 2 else jumbo_rx)(rng, arena.map, 128))
    found += arena.close()
    assert not found, [e.what for e in found]


def test_jumbo_finds_a_range_checked_on_its_first_and_last_frame(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    def first_and_last(self: PinTable, first: Any, last: Any, kind: Any) -> Any:
        ok = self.frame_ok[int(kind)]
        return ok[first] & ok[last]

    monkeypatch.setattr(PinTable, "covers", first_and_last)
    clean = run_campaign("verifier", 1, classes="hidden,scattered", iterations=64)
    assert not clean.findings  # two frames at most: the slip changes nothing on the default machine
    result = run_campaign("verifier", 1, classes="jumbo", iterations=16)
    assert {f.kind for f in result.findings} & {"rule", "dma", "leak"}, [f.escape.what for f in result.findings]
    case = Case.from_finding(result.findings[0], 1, Protection.VERIFIER)
    assert case.machine == "jumbo" and Case.from_dict(case.as_dict()).machine == "jumbo"
    assert replay(case).escaped  # the reproducer names its machine


def test_jumbo_finds_the_two_frame_fast_path_used_for_long_rx_buffers(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    original = checks.pinned_mask

    def rx_fast(addr: Any, pins: Any, owners: Any, memory_size: int, policy: Any) -> Any:
        if bool(original(addr, np.uint64(policy.rx_buffer_size - 1), pins, checks.Access.WRITE).all()):
            return None  # the slip: the two-frame test used whatever the buffer size
        return checks.check_ranges(addr, np.full(addr.size, policy.rx_buffer_size), pins, owners, memory_size,
                                   checks.Access.WRITE)  # fmt: skip

    monkeypatch.setattr(shadow, "check_rx", rx_fast)
    result = run_campaign("verifier", 1, classes="jumbo", iterations=32)
    assert "rule" in {f.kind for f in result.findings}, [f.escape.what for f in result.findings]


def test_odd_rounds_run_without_the_accelerator() -> None:
    hidden, jumbo = CLASSES["hidden"], CLASSES["jumbo"]
    assert block_machine(hidden, 0, Protection.VERIFIER) == ""
    assert block_machine(hidden, 1, Protection.VERIFIER) == "numpy"
    assert block_machine(hidden, 1, Protection.NONE) == ""
    assert block_machine(jumbo, 1, Protection.VERIFIER) == "jumbo"
    arena = Arena.build("verifier", 1, MemoryAudit(), machine="numpy")
    handler: Any = arena.kernel.queue("nic2", "tx").handler
    assert handler.fast is None


def test_a_slip_on_the_path_without_the_accelerator_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled_fast_path(required=True)

    def careless(self: Any, k: int) -> bool | None:  # forgets that the accelerator may be off
        st = self.state
        consts = st.policy.tx_fast_path
        if consts is None or self.held.size:
            return None
        mask, expect, limit = consts
        return bool(self.fast.lib.tx_snapshot_check_post(
            self.c_user, st.size, st.tail, k, self.c_snap, self.c_frame_ok, st.pins.frames,
            int(mask), int(expect), int(limit), self.c_shadow, self.tail, self.c_to_user,
        ))  # fmt: skip

    monkeypatch.setattr(shadow.TxShadow, "_compiled", careless)
    result = run_campaign("verifier", 1, classes="kernel-tx,hidden", iterations=400, arena_every=100)
    crashes = [f for f in result.findings if f.kind == "crash"]
    assert crashes and all(f.block >= 2 for f in crashes)  # the second round: the numpy machine

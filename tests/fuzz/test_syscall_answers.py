"""The oracle judges the kernel's answers, not only its DMA: system calls (fuzz/oracle/syscalls.py) and the owner
a refusal names (fuzz/oracle/reasons.py).

Each slip is a monkeypatch for one test only, the kind a kernel developer commits: an overlapping pin taken, a
deferred unpin that can be asked twice, a settle that lets go of active pins, a ring's last frame left unchecked
or one frame too many checked, a refusal naming the wrong owner, PIN_RELEASED for a frame that went on to alice.
The unmodified kernel gives no finding on the same attacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import guarded_step, run_campaign
from fuzz.surface import deferred_unpin, ring_at_edge
from ring.memory import PAGE_SHIFT
from verifier.address_space import AddressSpace
from verifier.audit import rejection_batch
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.pins import ACTIVE, RELEASING, Pin, PinTable
from verifier.rules import checks
from verifier.rules import reasons as R


def kinds(attacks: Any, mode: str = "verifier", seeds: int = 8) -> set[str]:
    """Oracle finding kinds over ``seeds`` attacks of a generator, each in the machine as built."""
    arena = Arena.build(mode, 1, MemoryAudit(), resettable=True)
    found: set[str] = set()
    for seed in range(seeds):
        arena.reset()
        found |= {e.kind for e in guarded_step(arena, attacks(np.random.default_rng(seed), arena.map, 16))}
    return found


@pytest.mark.parametrize("mode", ["verifier", "unsafe-inplace", "iommu", "none"])
def test_the_unmodified_kernel_answers_every_call_right(mode: str) -> None:
    assert "syscall" not in kinds(deferred_unpin, mode) | kinds(lambda r, m, n: ring_at_edge(r, m), mode, 16)


def test_an_overlapping_pin_taken_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    def add(self: PinTable, pin: Pin) -> None:  # the held-frames test forgotten
        self.pins[pin.handle] = pin
        self.access[pin.frames] = pin.access
        self.held[pin.frames] = True
        self._rebuild()

    monkeypatch.setattr(PinTable, "add", add)
    assert "syscall" in kinds(deferred_unpin)


def test_a_second_unpin_of_a_deferred_pin_taken_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    release = PinTable.release

    def lax(self: PinTable, handle: int) -> str:  # any pin still in the table may be unpinned, releasing or not
        pin = self.pins.get(handle)
        if pin is not None and pin.state == RELEASING:
            pin.state = ACTIVE
        return release(self, handle)

    monkeypatch.setattr(PinTable, "release", lax)
    assert "syscall" in kinds(deferred_unpin)


def test_a_settle_that_lets_go_of_active_pins_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    def settle(self: PinTable) -> list[Pin]:  # "no DMA in flight" taken for "being released"
        if not self.releasing:
            return []
        done = [p for p in self.pins.values() if not self.references(p.frames)]
        for pin in done:
            self._finish(pin)
        return done

    monkeypatch.setattr(PinTable, "settle", settle)
    assert "syscall" in kinds(deferred_unpin)


@pytest.mark.parametrize("extra", [-1, 1])
def test_a_ring_checked_one_frame_short_or_long_is_found(monkeypatch: pytest.MonkeyPatch, extra: int) -> None:
    def owns(self: AddressSpace, phys: int, nbytes: int) -> bool:  # the last frame missed, or one frame too many
        first, last = phys >> PAGE_SHIFT, ((phys + nbytes - 1) >> PAGE_SHIFT) + extra
        return bool((self.memory.owner[first : last + 1] == self.tenant_id).all())

    monkeypatch.setattr(AddressSpace, "owns_phys", owns)
    assert "syscall" in kinds(lambda r, m, n: ring_at_edge(r, m), seeds=16)


def test_a_refusal_naming_the_wrong_owner_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    label = rejection_batch.owner_label
    monkeypatch.setattr(
        rejection_batch, "owner_label", lambda owner, tenant: label(owner, tenant).replace("kernel", "own-unpinned")
    )
    result = run_campaign("verifier", seed=1, classes=["kernel-tx"], iterations=2, batch=32)
    assert any("names owner 'own-unpinned'" in f.escape.what for f in result.findings), result.as_dict()


def test_pin_released_for_a_frame_alice_got_is_found(monkeypatch: pytest.MonkeyPatch, numpy_path: None) -> None:
    classify = checks._classify

    def released_anyway(v: checks.Verdicts, bad: Any, *args: Any) -> None:  # "was ours once" taken for "is ours"
        classify(v, bad, *args)
        pins = args[3]  # addr, first, last, pins, owners, need
        frame = (v.bad_byte[bad] >> PAGE_SHIFT).clip(0, pins.frames - 1)
        v.reason[bad] = np.where(
            (v.reason[bad] == R.ADDR_NOT_PINNED) & pins.released[frame], R.PIN_RELEASED, v.reason[bad]
        )

    monkeypatch.setattr(checks, "_classify", released_anyway)
    result = run_campaign("verifier", seed=1, classes=["use-after-unpin"], iterations=16, batch=8)
    assert any("not the queue owner's own" in f.escape.what for f in result.findings), result.as_dict()


def test_owner_claims_of_a_file_backed_log_are_judged_record_by_record(tmp_path: Path) -> None:
    """Followed from a file, a run of records is cut where the pin reference changed: the owner column with it
    (interleave frees and reallocates ``uaf`` between refusals)."""
    log = AuditLog(tmp_path / "audit.jsonl", protection="verifier")
    result = run_campaign("verifier", seed=1, classes=["interleave"], iterations=300, audit=log)
    assert not result.findings, [f.escape.what for f in result.findings]

"""The system-call classes (fuzz/surface.py) have teeth: a kernel slip on the tenant's surface is found.

Each slip is a monkeypatch for one test only, the kind a kernel developer
commits: a pin rounded one byte long (``vaddr + length`` taken as the last
byte), a register trap that lets another tenant's stores through, a queue's
ring accepted without checking its frames are the caller's.  The unmodified
kernel gives no finding; ``none`` (no kernel checks at all) escapes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fuzz.arena import SPARE_QUEUE, Arena
from fuzz.campaign import run_campaign
from fuzz.case import Case, replay
from fuzz.steps import EveSends, RegAt
from ring import regs
from ring.memory import PAGE_SIZE
from ring.syscalls import DmaRegion
from verifier.address_space import AddressSpace
from verifier.audit.memory import MemoryAudit
from verifier.kernel import Kernel, KernelError
from verifier.modes.protection import Protection
from verifier.modes.trapping import TrappingMode

SURFACE = ["pin-range", "foreign-reg", "open-queue"]


def test_unmodified_kernel_finds_nothing_on_the_surface() -> None:
    for mode in ("verifier", "iommu", "unsafe-inplace"):
        result = run_campaign(mode, seed=1, classes=SURFACE, iterations=3 * 16, batch=64)
        assert not result.findings, (mode, [(f.cls, f.kind, f.escape.what) for f in result.findings])


def test_without_protection_the_surface_escapes() -> None:
    result = run_campaign("none", seed=1, classes=SURFACE, iterations=3 * 16, batch=64)
    kinds = {(f.cls, f.kind) for f in result.findings}
    assert ("foreign-reg", "queue") in kinds and any(c == "pin-range" for c, _ in kinds), kinds
    assert not [k for k in kinds if k[0] == "open-queue"], "open-queue escapes nowhere with a correct kernel"


def test_another_tenants_doorbell_moved_is_a_finding_and_replays() -> None:
    case = Case(1, Protection.NONE, "foreign-reg", (EveSends(4), RegAt("nic3", regs.TDT, 3), EveSends(1)))
    again = Case.from_dict(json.loads(case.dumps()))
    found = replay(again).escapes
    assert [e.kind for e in found] == ["queue"] and "eve's" in found[0].what, found
    assert not replay(again, "verifier").escapes


def test_a_trap_that_lets_foreign_stores_through_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TrappingMode, "writes_reach_device", lambda self, nic, tenant: True)
    result = run_campaign("verifier", seed=1, classes=["foreign-reg"], iterations=8, batch=64)
    assert any(f.kind == "queue" for f in result.findings), result.as_dict()


def test_a_pin_one_byte_long_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = Kernel.pin

    def long_by_one(self: Kernel, proc: Any, vaddr: int, length: int, access: int) -> Any:
        try:  # the end taken as vaddr + length, inclusive (where that page is mapped at all)
            return whole(self, proc, vaddr, length + 1, access)
        except KernelError:
            return whole(self, proc, vaddr, length, access)

    monkeypatch.setattr(Kernel, "pin", long_by_one)
    result = run_campaign("verifier", seed=1, classes=["pin-range"], iterations=32, batch=64)
    assert any(f.kind in ("pin", "dma") for f in result.findings), result.as_dict()


def test_a_ring_over_another_tenants_frame_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AddressSpace, "owns_phys", lambda self, phys, nbytes: True)
    for mode in ("none", "verifier"):
        result = run_campaign(mode, seed=1, classes=["open-queue"], iterations=256, batch=64)
        found = {f.kind for f in result.findings}
        assert "syscall" in found, (mode, result.as_dict())  # the answer itself: opened over alice's frame
        # and what follows from it: under verifier the kernel marks refusals into alice's frame
        assert mode == "none" or found & {"dma", "integrity"}, (mode, result.as_dict())


# Two kernel bugs the open-queue class found on the way, now fixed and in its arguments: a ring address that is
# not mapped escaped open_queue as a SegFault (not a refusal), and a region whose length is not a whole number of
# descriptors crashed the trapping modes' queue setup (the kernel viewed the tenant's whole region as descriptors;
# it now maps exactly TDLEN bytes at the ring's physical address itself).
def test_open_queue_over_an_unmapped_address_is_refused() -> None:
    arena = Arena.build("verifier", 1, MemoryAudit())
    spare = arena.spans["spare"]
    ring = DmaRegion(spare.vaddr + 4 * PAGE_SIZE, 0, PAGE_SIZE, np.zeros(PAGE_SIZE, dtype=np.uint8))  # guard page
    with pytest.raises(KernelError):
        arena.mallory.open_tx_queue("nic2", SPARE_QUEUE, ring, 256)


def test_open_queue_over_a_region_of_odd_length_is_refused_or_works() -> None:
    arena = Arena.build("verifier", 1, MemoryAudit())
    arena.open_queue("tx", "spare", 0, PAGE_SIZE + 8, 256)
    assert arena.log[-1].endswith(("opened", ")"))

"""The IOMMU's IOTLB: cached translations, and their invalidation on unmap and remap.

The danger of a translation cache is the stale entry: a page unmapped (its
pin released, its frame handed to someone else) whose translation is still
cached, so the device keeps reaching the frame.  The tests here show the
invalidation happens (after unpin a cached translation is not used: the
access faults and is audited), that without it the same sequence would leak
(the control that proves the test reaches the cache), and hold the cached
path to a plain, uncached reference translation over random map/unmap/access
sequences: same physical addresses, same mask, same faults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ring.descriptors import RXD_ERR_RXE
from ring.memory import PAGE_SHIFT, PAGE_SIZE
from tests.conftest import seq_frame
from tests.verifier.conftest import READ, WRITE, Env, RawRx, RawTx
from verifier.modes.iommu import IOTLB_SETS, Faults, Iommu, Iotlb
from verifier.pins import Access

U64_TOP = 1 << 64


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env("iommu")


def iommu_of(env: Env) -> Iommu:
    assert env.kernel.iommu is not None
    return env.kernel.iommu


def cached(iommu: Iommu, device: str, iova: int) -> bool:
    tlb = iommu.domains[device].iotlb
    page = iova >> PAGE_SHIFT
    return int(tlb.tags[page & (tlb.sets - 1)]) == page


def iommu_faults(env: Env, iova: int) -> list[dict[str, Any]]:
    return [r for r in env.records("iommu") if int(str(r["detail"]["iova"]), 16) == iova]


# -- the stale entry, in the running system ------------------------------------------------


def test_a_repeated_access_hits_the_iotlb(env: Env) -> None:
    tx = RawTx(env.alice)
    src = env.buffer(env.alice, PAGE_SIZE, READ)
    src.fill(0, seq_frame(1))
    iommu = iommu_of(env)
    tx.put(src.bus, 64)
    tx.doorbell()
    assert cached(iommu, "nic0", src.bus)
    hits = iommu.iotlb.hits
    tx.put(src.bus, 64)
    tx.doorbell()
    assert iommu.iotlb.hits > hits  # the second access (and the ring's) came from the cache
    assert env.wire == [seq_frame(1)] * 2 and not env.records()


def test_after_unpin_a_cached_tx_translation_is_not_used(env: Env) -> None:
    tx = RawTx(env.alice)
    src = env.buffer(env.alice, PAGE_SIZE, READ)
    src.fill(0, seq_frame(2))
    iommu = iommu_of(env)
    tx.put(src.bus, 64)
    tx.doorbell()
    assert cached(iommu, "nic0", src.bus) and env.wire == [seq_frame(2)]
    invalidations = iommu.iotlb.invalidations
    assert src.pin is not None and env.alice.unpin(src.pin) == "released"
    assert iommu.iotlb.invalidations == invalidations + 1
    assert not cached(iommu, "nic0", src.bus)
    misses = iommu.iotlb.misses
    tx.put(src.bus, 64)
    tx.doorbell()
    assert iommu.iotlb.misses == misses + 1  # walked, not translated from the stale entry
    (rec,) = iommu_faults(env, src.bus)
    assert rec["reason"] == "IOMMU_NOT_MAPPED" and rec["nic"] == "nic0"
    assert env.data_accesses("tx-data", allowed=False) == [(src.bus, 64)]
    assert env.wire == [seq_frame(2)]


def _late_rx_into_a_reused_frame(env: Env) -> tuple[npt.NDArray[np.uint8], int, int]:
    """Bob's RX buffer is used once (cached), unpinned, freed and handed to alice; then a frame arrives for it.

    Returns alice's view of the reused frame (filled with 0x5A), the RX descriptor's errors and the buffer's IOVA.
    """
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    dst = env.buffer(env.bob, PAGE_SIZE, WRITE)
    phys = env.bob.virt_to_phys(dst.bus)
    rx.put(dst.bus)
    rx.doorbell()
    tx.send(7)
    tx.doorbell()
    assert dst.read(0, 64) == seq_frame(7)
    slot = rx.put(dst.bus)  # posted again: the device holds its descriptor
    rx.doorbell()
    assert cached(iommu_of(env), "nic1", dst.bus)
    assert dst.pin is not None and env.bob.unpin(dst.pin) == "released"
    env.bob.free_dma(dst.region)
    reused = env.alice.alloc_dma(PAGE_SIZE)
    assert env.alice.virt_to_phys(reused.vaddr) == phys  # the frame is alice's now
    reused.view[:] = 0x5A
    tx.send(8)
    tx.doorbell()
    return reused.view, int(rx.ring["errors"][slot]), dst.bus


def test_after_unpin_a_cached_rx_translation_cannot_reach_the_frames_new_owner(env: Env) -> None:
    view, errors, iova = _late_rx_into_a_reused_frame(env)
    (rec,) = iommu_faults(env, iova)
    assert rec["reason"] == "IOMMU_NOT_MAPPED" and rec["detail"]["access"] == "write"
    assert (view == 0x5A).all()  # the late DMA could not reach the new owner's data
    assert env.data_accesses("rx-data", allowed=False) == [(iova, 64)]
    assert errors == RXD_ERR_RXE


def test_control_without_invalidation_the_stale_entry_leaks(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same sequence with the invalidation removed: the device writes into alice's frame.

    This shows the test above reaches the IOTLB: it passes because of the
    invalidation, not because the access happened to walk.
    """
    monkeypatch.setattr(Iotlb, "invalidate_pages", lambda self, first, count: None)
    monkeypatch.setattr(Iotlb, "invalidate_all", lambda self: None)
    view, _, iova = _late_rx_into_a_reused_frame(env)
    assert not iommu_faults(env, iova)
    assert bytes(view[:64]) == seq_frame(8)  # the stale translation was used


# -- invalidation, on the IOMMU alone --------------------------------------------------------

IOVA = 0x7F00_0000_0000


def one(iommu: Iommu, iova: int, length: int = 64, write: bool = False) -> tuple[int, bool]:
    phys, ok = iommu.translate("d", np.array([iova], dtype=np.uint64), np.array([length], dtype=np.int64), write)
    return int(phys[0]), bool(ok[0])


def test_remap_invalidates_the_old_translation() -> None:
    iommu = Iommu()
    iommu.map("d", IOVA, np.array([10], dtype=np.int64), Access.READ_WRITE)
    assert one(iommu, IOVA + 5) == ((10 << PAGE_SHIFT) + 5, True)
    assert one(iommu, IOVA + 5) == ((10 << PAGE_SHIFT) + 5, True)
    assert iommu.iotlb.hits == 1 and iommu.iotlb.misses == 1
    iommu.map("d", IOVA, np.array([20], dtype=np.int64), Access.READ)  # a present entry changed
    assert iommu.iotlb.page_invalidations == 1
    assert one(iommu, IOVA + 5) == ((20 << PAGE_SHIFT) + 5, True)
    assert one(iommu, IOVA + 5, write=True) == (0, False)  # the new entry's permission, not the cached one's
    assert iommu.faults == 1


def test_a_first_map_invalidates_nothing() -> None:
    iommu = Iommu()
    iommu.map("d", IOVA, np.arange(4, dtype=np.int64), Access.READ)
    assert iommu.iotlb.invalidations == 0


def test_unmapping_more_than_the_iotlb_holds_invalidates_the_domain() -> None:
    iommu = Iommu(iotlb_sets=8)
    iommu.map("d", IOVA, np.arange(100, 120, dtype=np.int64), Access.READ)
    for k in range(8):
        one(iommu, IOVA + k * PAGE_SIZE)
    iommu.unmap("d", IOVA + 4 * PAGE_SIZE, 2)
    assert (iommu.iotlb.page_invalidations, iommu.iotlb.domain_invalidations) == (1, 0)
    assert not cached(iommu, "d", IOVA + 4 * PAGE_SIZE) and cached(iommu, "d", IOVA)
    iommu.unmap("d", IOVA + 8 * PAGE_SIZE, 12)
    assert (iommu.iotlb.page_invalidations, iommu.iotlb.domain_invalidations) == (1, 1)
    assert not cached(iommu, "d", IOVA)  # everything went, mapped or not
    assert one(iommu, IOVA) == ((100 << PAGE_SHIFT), True)  # and walks back in
    iommu.invalidate("d")
    assert iommu.iotlb.domain_invalidations == 2 and not cached(iommu, "d", IOVA)


def test_pages_sharing_a_set_never_mix() -> None:
    iommu = Iommu(iotlb_sets=4)
    iommu.map("d", IOVA, np.array([50], dtype=np.int64), Access.READ)
    iommu.map("d", IOVA + 4 * PAGE_SIZE, np.array([90], dtype=np.int64), Access.WRITE)  # the same set
    addrs = np.array([IOVA, IOVA + 4 * PAGE_SIZE, IOVA + 1], dtype=np.uint64)
    lengths = np.full(3, 8, dtype=np.int64)
    for _ in range(3):
        phys, ok = iommu.translate("d", addrs, lengths, False)
        assert ok.tolist() == [True, False, True]
        assert phys.tolist() == [50 << PAGE_SHIFT, 0, (50 << PAGE_SHIFT) + 1]


def test_pages_on_scattered_frames_are_not_one_range() -> None:
    """Three pages on frames 10, 5, 12: the ends are two frames apart, but frame 11 is not mapped."""
    iommu = Iommu()
    iommu.map("d", IOVA, np.array([10, 5, 12], dtype=np.int64), Access.READ)
    assert one(iommu, IOVA, 3 * PAGE_SIZE) == (0, False)
    assert one(iommu, IOVA, 2 * PAGE_SIZE) == (0, False)
    assert one(iommu, IOVA + PAGE_SIZE, 2 * PAGE_SIZE) == (0, False)
    assert one(iommu, IOVA, PAGE_SIZE) == (10 << PAGE_SHIFT, True)


def test_a_bad_iotlb_size_is_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Iommu(iotlb_sets=6)
    assert Iommu().iotlb_sets == IOTLB_SETS


# -- differential: the IOTLB against a plain uncached translation ----------------------------


def reference(entries: dict[int, tuple[int, int]], addr: int, length: int, need: int) -> tuple[int, int]:
    """One access, page by page, in plain integers: (phys, reason) with 0 ok, 1 not mapped, 2 permission.

    Every page of ``[addr, addr + max(length, 1))`` must be mapped, on
    consecutive frames (one physically contiguous range), and grant ``need``;
    a range past 2**64 is not mapped.
    """
    end = addr + max(length, 1) - 1
    if end >= U64_TOP:
        return 0, 1
    first, last = addr >> PAGE_SHIFT, end >> PAGE_SHIFT
    if last - first >= len(entries):
        return 0, 1
    got = [entries.get(page) for page in range(first, last + 1)]
    if any(e is None for e in got):
        return 0, 1
    frames = [e[0] for e in got if e is not None]
    if frames != list(range(frames[0], frames[0] + len(frames))):
        return 0, 1
    if not all(e[1] & need for e in got if e is not None):
        return 0, 2
    return (frames[0] << PAGE_SHIFT) | (addr & (PAGE_SIZE - 1)), 0


@dataclass
class Seen:
    faults: list[Faults]

    def __call__(self, faults: Faults) -> None:
        self.faults.append(faults)


BASES = (0x7F00_0000_0000, (U64_TOP - 16 * PAGE_SIZE))  # an ordinary IOVA window, and the top of the space


def random_access(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    base = BASES[int(rng.integers(len(BASES)))]
    pages = rng.integers(-2, 18, size=n)
    offsets = rng.choice([0, 1, 64, 2047, 2048, PAGE_SIZE - 64, PAGE_SIZE - 1], size=n)
    addrs = [(base + int(p) * PAGE_SIZE + int(o)) % U64_TOP for p, o in zip(pages, offsets, strict=True)]
    lengths = rng.choice([-3, 0, 1, 64, 1514, 2048, PAGE_SIZE, PAGE_SIZE + 1, 2 * PAGE_SIZE, 3 * PAGE_SIZE + 7, 2**40],
                         size=n)  # fmt: skip
    return np.array(addrs, dtype=np.uint64), lengths.astype(np.int64)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("sets", [4, 16, IOTLB_SETS])
def test_iotlb_matches_the_uncached_translation(seed: int, sets: int) -> None:
    rng = np.random.default_rng([seed, sets])
    seen = Seen([])
    iommu = Iommu(seen, iotlb_sets=sets)
    entries: dict[int, tuple[int, int]] = {}
    for _ in range(150):
        op = rng.random()
        base = BASES[int(rng.integers(len(BASES)))]
        first_page = (base >> PAGE_SHIFT) + int(rng.integers(-2, 16))
        count = int(rng.integers(1, 6))
        if op < 0.2:
            start = int(rng.integers(100, 140))
            frames = np.arange(start, start + count) if rng.random() < 0.7 else rng.integers(100, 140, size=count)
            access = Access(int(rng.integers(1, 4)))
            iommu.map("d", first_page << PAGE_SHIFT, frames.astype(np.int64), access)
            for k, frame in enumerate(frames.tolist()):
                entries[first_page + k] = (int(frame), int(access))
        elif op < 0.3:
            iommu.unmap("d", first_page << PAGE_SHIFT, count)
            for page in range(first_page, first_page + count):
                entries.pop(page, None)
        elif op < 0.32:
            iommu.invalidate("d")
        else:
            n = int(rng.choice([1, 1, 2, 7, 64, 300]))
            addrs, lengths = random_access(rng, n)
            write = bool(rng.random() < 0.5)
            need = int(Access.WRITE if write else Access.READ)
            seen.faults.clear()
            phys, ok = iommu.translate("d", addrs, lengths, write)
            want = [reference(entries, int(a), int(ln), need) for a, ln in zip(addrs, lengths, strict=True)]
            assert phys.dtype == np.uint64 and phys.tolist() == [p for p, _ in want]
            assert ok.dtype == np.bool_ and ok.tolist() == [r == 0 for _, r in want]
            bad = [i for i, (_, r) in enumerate(want) if r]
            if not bad:
                assert not seen.faults
                continue
            (faults,) = seen.faults
            assert faults.device == "d" and faults.write == write
            assert faults.iova.tolist() == addrs[bad].tolist()
            assert faults.length.tolist() == lengths[bad].tolist()
            assert faults.permission.tolist() == [want[i][1] == 2 for i in bad]
    assert iommu.iotlb.hits and iommu.iotlb.misses and iommu.iotlb.invalidations


@pytest.mark.parametrize("seed", range(4))
def test_translation_through_the_iotlb_equals_a_walk_every_time(seed: int) -> None:
    """The same sequences against an IOMMU whose IOTLB is emptied before each batch (always the walk)."""
    rng = np.random.default_rng(seed)
    cached_faults, walked_faults = Seen([]), Seen([])
    fast, slow = Iommu(cached_faults, iotlb_sets=16), Iommu(walked_faults, iotlb_sets=16)
    for _ in range(200):
        base = BASES[int(rng.integers(len(BASES)))]
        iova = ((base >> PAGE_SHIFT) + int(rng.integers(-2, 16))) << PAGE_SHIFT
        if rng.random() < 0.25:
            count = int(rng.integers(1, 5))
            start = int(rng.integers(100, 120))
            access = Access(int(rng.integers(1, 4)))
            for iommu in (fast, slow):
                iommu.map("d", iova, np.arange(start, start + count, dtype=np.int64), access)
        elif rng.random() < 0.3:
            count = int(rng.integers(1, 5))
            for iommu in (fast, slow):
                iommu.unmap("d", iova, count)
        else:
            addrs, lengths = random_access(rng, int(rng.choice([1, 5, 256])))
            write = bool(rng.random() < 0.5)
            slow.invalidate("d")
            p1, m1 = fast.translate("d", addrs, lengths, write)
            p2, m2 = slow.translate("d", addrs, lengths, write)
            assert p1.tobytes() == p2.tobytes() and m1.tolist() == m2.tolist()
    assert len(cached_faults.faults) == len(walked_faults.faults)
    for a, b in zip(cached_faults.faults, walked_faults.faults, strict=True):
        assert (a.device, a.write) == (b.device, b.write)
        assert a.iova.tobytes() == b.iova.tobytes() and a.length.tobytes() == b.length.tobytes()
        assert a.permission.tolist() == b.permission.tolist()
    assert fast.iotlb.hits > 0 and slow.iotlb.hits == 0

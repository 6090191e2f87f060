"""The compiled classification (fastpath.c ``tx_classify``/``rx_classify``) gives checks.py's verdicts, exactly.

Identical ``Verdicts`` -- reason, first bad byte, owner, held, and None
where checks.py returns None -- over random descriptors aimed at every rule's
boundary (page and memory edges, 64-bit wrap, every pin state, every limit
of several policies), and over the batches every fuzz class posts in a
campaign.  These tests are what kills the mutants of the C functions
(fuzz/mutants/targets.py), so each boundary a comparison in the C could
slip on is drawn often.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fuzz.campaign import run_campaign
from fuzz.classes import CLASSES
from ring.descriptors import RX_DESC, TX_DESC, TXD_CMD_DEXT, TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_RS
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE
from tests.verifier.compiled import compiled_fast_path
from verifier.modes.shadow import RxShadow, TxShadow
from verifier.pins import PinTable
from verifier.rules.checks import Verdicts, check_rx, check_tx
from verifier.rules.classify import Classifier
from verifier.rules.policy import POLICIES, Policy

FRAMES = 48
MEMORY_SIZE = FRAMES << PAGE_SHIFT
TENANT = 3
TX_POLICIES = [
    POLICIES["default"],
    POLICIES["jumbo"],
    Policy(max_buffer=2000, max_frame=3000, max_fragments=3),
    Policy(max_buffer=PAGE_SIZE, max_frame=PAGE_SIZE, max_fragments=1, tx_cmd_allowed=TXD_CMD_EOP | TXD_CMD_IC),
]
RX_SIZES = [1, 2048, PAGE_SIZE, PAGE_SIZE + 1, 8192]


def fast_path() -> Any:
    fast = compiled_fast_path(required=True)
    assert fast is not None
    return fast


def same(c: Verdicts | None, py: Verdicts | None, what: str) -> None:
    assert (c is None) == (py is None), f"{what}: compiled {'None' if c is None else 'verdicts'}, numpy the other"
    if c is None or py is None:
        return
    for name in ("reason", "bad_byte", "owner", "held"):
        a, b = getattr(c, name), getattr(py, name)
        assert a.dtype == b.dtype, (what, name)
        bad = np.flatnonzero(a != b)
        assert not bad.size, f"{what}: {name} differs at {bad[:5]}: compiled {a[bad[:5]]}, numpy {b[bad[:5]]}"


def random_table(rng: np.random.Generator) -> tuple[PinTable, np.ndarray]:
    """A pin table and owners in every combination: pinned for read, write, both or not at all; released or not;
    the tenant's own, another tenant's, the kernel's or free.  Runs of one state so that ranges cross them."""
    pins = PinTable(TENANT, FRAMES)
    state = rng.integers(0, 4, FRAMES // 4).repeat(4)
    flip = rng.random(FRAMES) < 0.3
    pins.access[:] = np.where(flip, rng.integers(0, 4, FRAMES), state).astype(np.uint8)
    pins.released[:] = (pins.access == 0) & (rng.random(FRAMES) < 0.5)
    owners = rng.choice(np.array([TENANT, TENANT, TENANT, 1, OWNER_KERNEL, OWNER_FREE], dtype=np.int32), FRAMES)
    pins._rebuild()
    return pins, owners


def addresses(rng: np.random.Generator, n: int) -> np.ndarray:
    """Starts near the edges the rules turn on: page starts and ends, the end of memory, 2**64."""
    frame = rng.integers(0, FRAMES + 2, n).astype(np.uint64) << np.uint64(PAGE_SHIFT)
    offset = rng.choice(np.array([0, 1, 2, 100, PAGE_SIZE // 2, PAGE_SIZE - 64, PAGE_SIZE - 2, PAGE_SIZE - 1]), n)
    addr = frame + offset.astype(np.uint64)
    top = np.uint64(2**64 - 1) - rng.integers(0, 3 * PAGE_SIZE, n).astype(np.uint64)
    near_end = np.uint64(MEMORY_SIZE) - rng.integers(0, 2 * PAGE_SIZE, n).astype(np.uint64)
    pick = rng.random(n)
    return np.where(pick < 0.08, top, np.where(pick < 0.25, near_end, addr))


def tx_batch(rng: np.random.Generator, n: int, policy: Policy) -> np.ndarray:
    descs = np.zeros(n, dtype=TX_DESC)
    addr = addresses(rng, n)
    limits = [policy.max_buffer, policy.max_frame, policy.max_frame // 2, policy.max_frame // 3]
    edges = np.array([0, 1, 2, 60, 1500, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, 65535]
                     + [x + d for x in limits for d in (-1, 0, 1)])  # fmt: skip
    length = np.where(rng.random(n) < 0.7, rng.choice(np.clip(edges, 0, 65535), n), rng.integers(1, 5000, n))
    # a length that ends the buffer exactly at a page boundary or at the end of memory (when it fits in 16 bits)
    to_page = (PAGE_SIZE - (addr % np.uint64(PAGE_SIZE))).astype(np.int64) + rng.integers(0, 2, n) * PAGE_SIZE
    to_end = np.int64(MEMORY_SIZE) - addr.astype(np.int64)
    pick = rng.random(n)
    length = np.where(pick < 0.12, to_page, length)
    length = np.where((pick > 0.9) & (to_end > 0) & (to_end < 65536), to_end, length)
    descs["addr"] = addr
    descs["length"] = np.clip(length, 0, 65535)
    plain = TXD_CMD_EOP | TXD_CMD_RS
    cmds = np.array([plain, plain, plain, TXD_CMD_RS, TXD_CMD_RS, TXD_CMD_EOP | TXD_CMD_IC, TXD_CMD_IC,
                     TXD_CMD_EOP | TXD_CMD_DEXT, 0x80, 0xFF])  # fmt: skip
    descs["cmd"] = rng.choice(cmds, n)
    descs["cso"] = rng.integers(0, 256, n)
    descs["css"] = rng.integers(0, 256, n)
    # checksum offsets just inside and just outside a one-descriptor packet
    small = rng.random(n) < 0.3
    descs["cso"] = np.where(
        small, (descs["length"].astype(np.int64) - rng.integers(1, 4, n)).clip(0, 255), descs["cso"]
    )
    descs["css"] = np.where(
        small, (descs["length"].astype(np.int64) - rng.integers(0, 2, n)).clip(0, 255), descs["css"]
    )
    return descs


def rx_batch(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    descs = np.zeros(n, dtype=RX_DESC)
    addr = addresses(rng, n)
    # buffers that end exactly at a page boundary or at the end of memory
    pick = rng.random(n)
    addr = np.where(pick < 0.1, (addr & ~np.uint64(PAGE_SIZE - 1)) + np.uint64(PAGE_SIZE - size % PAGE_SIZE), addr)
    addr = np.where(pick > 0.92, np.uint64(MEMORY_SIZE - size), addr)
    descs["addr"] = addr
    descs["length"] = rng.integers(0, 65536, n)  # whatever the tenant left: never read
    return descs


def clean(pins: PinTable, rng: np.random.Generator, n: int, size: int, dtype: np.dtype[Any]) -> np.ndarray:
    """Descriptors that every rule accepts (one-page packets in frames pinned for both), so None is reached too."""
    good = np.flatnonzero(pins.access == 3)
    descs = np.zeros(n, dtype=dtype)
    if good.size:
        frames = rng.choice(good, n).astype(np.uint64)
        descs["addr"] = (frames << np.uint64(PAGE_SHIFT)) + rng.integers(0, PAGE_SIZE - size + 1, n).astype(np.uint64)
    if dtype == TX_DESC:
        descs["length"] = size
        descs["cmd"] = TXD_CMD_EOP | TXD_CMD_RS
    return descs


@pytest.mark.parametrize("policy", TX_POLICIES, ids=["default", "jumbo", "small", "one-fragment"])
def test_tx_classify_gives_check_tx_verdicts(policy: Policy) -> None:
    fast = fast_path()
    rng = np.random.default_rng(12)
    for trial in range(250):
        pins, owners = random_table(rng)
        classifier = Classifier(fast, pins, owners, MEMORY_SIZE)
        assert classifier.takes_tx(policy)
        n = int(rng.choice([1, 2, 3, 7, 18, 19, 40, 255]))
        batches = [tx_batch(rng, n, policy)]
        if trial % 5 == 0:
            batches.append(clean(pins, rng, n, int(rng.integers(1, min(policy.max_buffer, PAGE_SIZE) + 1)), TX_DESC))
            mixed = batches[-1].copy()  # one bad descriptor among good ones
            mixed[int(rng.integers(0, n))] = tx_batch(rng, 1, policy)[0]
            batches.append(mixed)
        for descs in batches:
            same(classifier.check_tx(descs, policy), check_tx(descs, pins, owners, MEMORY_SIZE, policy),
                 f"trial {trial}")  # fmt: skip


def test_tx_classify_packet_limits_to_the_byte() -> None:
    """Packets of several fragments whose total is the frame limit and one more, and fragment counts at the limit."""
    fast = fast_path()
    policy = Policy(max_buffer=2000, max_frame=3000, max_fragments=3)
    pins = PinTable(TENANT, FRAMES)
    pins.access[:] = 3
    pins._rebuild()
    owners = np.full(FRAMES, TENANT, dtype=np.int32)
    classifier = Classifier(fast, pins, owners, MEMORY_SIZE)
    for lengths in ([1500, 1500], [1500, 1501], [1000, 1000, 1000], [1000, 1000, 1001], [10, 10, 10, 10], [1, 1, 1]):
        for last_eop in (True, False):
            descs = np.zeros(len(lengths), dtype=TX_DESC)
            descs["addr"] = PAGE_SIZE * 4
            descs["length"] = lengths
            descs["cmd"] = TXD_CMD_RS
            descs["cmd"][0] |= TXD_CMD_IC
            descs["cso"][0], descs["css"][0] = 255, 254
            if last_eop:
                descs["cmd"][-1] |= TXD_CMD_EOP
            same(classifier.check_tx(descs, policy), check_tx(descs, pins, owners, MEMORY_SIZE, policy), str(lengths))


@pytest.mark.parametrize("size", RX_SIZES)
def test_rx_classify_gives_check_rx_verdicts(size: int) -> None:
    fast = fast_path()
    policy = Policy(rx_buffer_size=size)
    rng = np.random.default_rng(size)
    for trial in range(250):
        pins, owners = random_table(rng)
        classifier = Classifier(fast, pins, owners, MEMORY_SIZE)
        assert classifier.takes_rx(policy)
        n = int(rng.choice([1, 2, 5, 40, 255]))
        batches = [rx_batch(rng, n, size)]
        if trial % 5 == 0 and size <= PAGE_SIZE:
            batches.append(clean(pins, rng, n, size, RX_DESC))
        for descs in batches:
            same(classifier.check_rx(descs, policy), check_rx(descs["addr"], pins, owners, MEMORY_SIZE, policy),
                 f"trial {trial}")  # fmt: skip


def test_an_empty_batch_and_a_queue_the_c_cannot_hold() -> None:
    fast = fast_path()
    pins, owners = random_table(np.random.default_rng(1))
    classifier = Classifier(fast, pins, owners, MEMORY_SIZE)
    assert classifier.check_tx(np.zeros(0, dtype=TX_DESC), Policy()) is None
    assert classifier.check_rx(np.zeros(0, dtype=RX_DESC), Policy()) is None
    assert not Classifier(fast, pins, owners, MEMORY_SIZE - 1).takes_tx(Policy())  # memory not whole frames
    assert not classifier.takes_tx(Policy(max_frame=2**64))
    assert not classifier.takes_rx(Policy(rx_buffer_size=0))


def spy(monkeypatch: pytest.MonkeyPatch, cls: type[Any], counts: Counter[tuple[str, bool]]) -> None:
    """Every batch a queue classifies is classified both ways too -- the compiled way (the queue's own classifier,
    or one made for a queue on the numpy path) and by checks.py -- and the three compared."""
    original: Callable[..., Verdicts | None] = cls._check
    fast = fast_path()

    def checked(self: Any, batch: np.ndarray) -> Verdicts | None:
        got = original(self, batch)
        st = self.state
        c = self.classifier or Classifier(fast, st.pins, st.owners, st.memory_size)
        if cls is TxShadow:
            want, compiled = (
                check_tx(batch, st.pins, st.owners, st.memory_size, st.policy),
                c.check_tx(batch, st.policy),
            )
        else:
            want = check_rx(batch["addr"], st.pins, st.owners, st.memory_size, st.policy)
            compiled = c.check_rx(batch, st.policy)
        what = f"{cls.__name__} batch of {batch.size}, {'compiled' if self.fast is not None else 'numpy'} machine"
        assert (self.classifier is not None) == (self.fast is not None), what
        same(compiled, want, what)
        same(got, want, what)
        counts[cls.__name__, self.fast is not None] += 1
        return got

    monkeypatch.setattr(cls, "_check", checked)


def test_every_fuzz_class_batch_gets_the_same_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A campaign over every class, two rounds (the second on the kernel without its compiled path,
    fuzz/campaign.py ``block_machine``): every batch a queue classifies gets the same verdicts from the compiled
    classification and from checks.py, and the campaign finds nothing."""
    counts: Counter[tuple[str, bool]] = Counter()
    spy(monkeypatch, TxShadow, counts)
    spy(monkeypatch, RxShadow, counts)
    names = list(CLASSES)
    result = run_campaign("verifier", 5, names, iterations=2 * 5 * len(names), batch=64, arena_every=5)
    assert not result.findings and not result.audit_problems
    for queue in ("TxShadow", "RxShadow"):
        for compiled in (True, False):
            assert counts[queue, compiled] > 5, counts

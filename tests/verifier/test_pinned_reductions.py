"""The numpy path's reduced fast checks decide exactly what the element-wise ones do.

``checks.all_pinned`` (one OR over the addresses, then one table lookup of
first frames, or of first and last frames) must answer
``pinned_mask(...).all()`` for any addresses: page edges, ranges that cross
a page, chunk-aligned buffers, frames beyond memory and the 64-bit wrap; and
``check_tx``'s reductions over a batch's words (AND and OR of commands and
lengths) must pass a batch exactly when the element-wise fast path does.
The reference path (tests/verifier/test_vectorised_vs_reference.py) holds
both to the one-descriptor-at-a-time rules.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ring.descriptors import TX_DESC, TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import PAGE_SHIFT, PAGE_SIZE
from verifier.pins import Access, Pin, PinTable
from verifier.rules import checks
from verifier.rules.policy import Policy

FRAMES = 16
TENANT = 1
MEMORY = FRAMES * PAGE_SIZE

#: addresses near what matters: page and chunk edges, the last frame, beyond memory, the 64-bit wrap
ADDRESS = st.one_of(
    st.integers(0, MEMORY - 1),
    st.sampled_from([0, 2048, PAGE_SIZE - 64, PAGE_SIZE - 1, PAGE_SIZE, MEMORY - PAGE_SIZE, MEMORY - 1, MEMORY,
                     MEMORY + 1, 2**63, 2**64 - PAGE_SIZE, 2**64 - 1]),
    st.integers(0, FRAMES - 1).map(lambda f: f << PAGE_SHIFT | 2048),
)  # fmt: skip


#: spans at the edges: one byte, a 64-byte frame, half a page (a chunk), a whole page
SPAN = st.sampled_from([0, 1, 63, 64, 2047, 2048, PAGE_SIZE - 1])
#: the pinned frames: every other one (a range crossing from one into the next meets an unpinned frame), or any
PINNED = st.one_of(st.just(list(range(0, FRAMES, 2))), st.lists(st.integers(0, FRAMES - 1), max_size=FRAMES))


def inside(pinned: list[int]) -> st.SearchStrategy[int]:
    """Addresses in pinned frames, mostly at the offsets where a range's end moves to the next frame."""
    frames = st.sampled_from(sorted(set(pinned)) or [0])
    offset = st.one_of(st.sampled_from([0, 64, 2048, PAGE_SIZE - 2048, PAGE_SIZE - 64, PAGE_SIZE - 1]),
                       st.integers(0, PAGE_SIZE - 1))  # fmt: skip
    return st.tuples(frames, offset).map(lambda fo: fo[0] << PAGE_SHIFT | fo[1])


def table(pinned: list[int]) -> PinTable:
    pins = PinTable(TENANT, FRAMES)
    for handle, frame in enumerate(sorted(set(pinned))):
        kind = Access.READ_WRITE if frame % 3 else Access.READ
        pins.add(Pin(handle, TENANT, frame << PAGE_SHIFT, PAGE_SIZE, kind, np.array([frame], dtype=np.int64)))
    return pins


@settings(max_examples=200, deadline=None)
@given(
    pinned=PINNED,
    data=st.data(),
    spans=st.one_of(SPAN, st.lists(SPAN, min_size=40, max_size=40)),
    need=st.sampled_from([Access.READ, Access.WRITE]),
)
def test_all_pinned_answers_what_the_element_wise_mask_does(
    pinned: list[int], data: st.DataObject, spans: int | list[int], need: Access
) -> None:
    pins = table(pinned)
    addr = data.draw(st.lists(st.one_of(inside(pinned), ADDRESS), min_size=1, max_size=40))
    a = np.array(addr, dtype=np.uint64)
    element: np.uint64 | np.ndarray
    if isinstance(spans, int):
        span: int | np.ndarray = spans
        widest = spans
        element = np.uint64(spans)
    else:
        span = element = np.array(spans[: a.size], dtype=np.uint16)
        widest = int(span.max())
    assert checks.all_pinned(a, span, widest, pins, need) == bool(checks.pinned_mask(a, element, pins, need).all())


def _element_wise_pass(descs: np.ndarray, pins: PinTable, policy: Policy) -> bool:
    fast = policy.tx_fast_path
    assert fast is not None
    mask, expected, limit = fast
    ok = (descs["cmd"] & mask) == expected
    span = descs["length"] - np.uint16(1)
    ok &= span < limit
    ok &= checks.pinned_mask(descs["addr"], span, pins, Access.READ)
    return bool(ok.all())


PLAIN = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS


@settings(max_examples=200, deadline=None)
@given(
    pinned=PINNED,
    data=st.data(),
    length=st.one_of(st.just(64), st.sampled_from([0, 1, 2048, PAGE_SIZE, PAGE_SIZE + 1]), st.integers(0, 65535)),
    strided=st.booleans(),
)
def test_check_tx_passes_a_batch_exactly_when_the_element_wise_fast_path_does(
    pinned: list[int], data: st.DataObject, length: int, strided: bool
) -> None:
    """Mostly one length and plain commands with one odd row, as a reduction must see it among the rest."""
    pins = table(pinned)
    command = st.one_of(st.just(PLAIN), st.sampled_from([TXD_CMD_EOP, PLAIN | TXD_CMD_IC, TXD_CMD_RS, 0x80, 0]),
                        st.integers(0, 255))  # fmt: skip
    rows = data.draw(
        st.lists(
            st.tuples(st.one_of(inside(pinned), ADDRESS), st.one_of(st.just(length), st.integers(0, 65535)), command),
            min_size=1,
            max_size=40,
        )
    )
    policy = Policy()
    base = np.zeros(2 * len(rows), dtype=TX_DESC)
    descs = base[::2] if strided else base[: len(rows)]  # not contiguous: the reductions over fields
    for i, (addr, size, cmd) in enumerate(rows):
        descs[i] = (addr, size, 0, cmd, 0, 0, 0)
    fast = policy.tx_fast_path
    assert fast is not None
    passes = _element_wise_pass(descs, pins, policy)
    assert checks._plain_tx(descs, fast, pins) == passes
    if passes:
        assert checks.check_tx(descs, pins, np.full(FRAMES, TENANT, dtype=np.int32), MEMORY, policy) is None

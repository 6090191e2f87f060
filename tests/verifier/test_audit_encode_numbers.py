"""encode.c's number and text columns at their edges, against Python's ``str``, ``hex`` and ``bytes.hex``.

The formatter counts a number's digits from its bit length and copies short texts as overlapping words;
every power of ten and its neighbours, every bit length, both signs, and texts of every length up to past
the word sizes hold both to what Python writes (``interleave``, the semantics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from verifier.audit import encode
from verifier.audit.columns import Column, Hexes, HexRows, Ints, Picks, interleave


@pytest.fixture
def fast() -> Any:
    forget_accelerators()
    return compiled_accelerator(encode.enabled(), encode.status())


def edges() -> list[int]:
    """Every power of ten and of two below 2**64, each with its neighbours."""
    around = {0, 1, 2**64 - 1}
    for k in range(20):
        around |= {10**k - 1, 10**k, 10**k + 1}
    for k in range(64):
        around |= {2**k - 1, 2**k, 2**k + 1}
    return sorted(v for v in around if 0 <= v < 2**64)


def test_numbers_at_every_digit_count_are_written_as_python_writes_them(fast: Any) -> None:
    unsigned = np.array(edges(), dtype=np.uint64)
    signed = unsigned.view(np.int64)
    n = len(unsigned)
    columns: list[Column] = [
        b"[", Ints(unsigned), b",", Ints(signed), b",", Hexes(unsigned), b",", Hexes(signed), b"]\n",
    ]  # fmt: skip
    written = encode.lines(fast, n, columns)
    assert written == interleave(n, columns)
    assert written.split(b"\n")[1] == b"[1,1,0x1,0x1]"


def test_texts_of_every_length_are_copied_whole(fast: Any) -> None:
    """Constants and picked strings of 0 to 70 bytes between numbers: no byte lost, none repeated."""
    rng = np.random.default_rng(3)
    texts = [bytes(rng.integers(33, 127, size, dtype=np.uint8)) for size in range(71)]
    n = len(texts)
    rows = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    for size in range(71):
        columns: list[Column] = [
            texts[size], Ints(np.arange(n, dtype=np.int64)), Picks(texts, np.arange(n, dtype=np.int64)),
            texts[70 - size], HexRows(rows), b"\n",
        ]  # fmt: skip
        assert encode.lines(fast, n, columns) == interleave(n, columns)

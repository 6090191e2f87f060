"""enc_chain's two ways to libcrypto's SHA-256: SHA256_Init/Update/Final (``libcrypto.direct``, used when the
library has them) and EVP (always there): the same lines, the same last hash, on the same tails and readings.

test_audit_chaining.py holds the compiled chain (whichever way it hashes here) to Python's; this holds the way
it does not take on this machine to the one it does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.needs import missing
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from tests.verifier.test_audit_encoders import random_batch
from verifier.audit import chaining, encode, libcrypto
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.lines import tail_columns

LEAD, END = b'{"v":1,"seq":', b',"protection":"verifier","prev":"'
DIRECT_FIELDS = ("sha256_init", "sha256_update", "sha256_final")


@pytest.fixture
def fast() -> Any:
    forget_accelerators()
    fast = compiled_accelerator(encode.enabled(), encode.status())
    if libcrypto.digest() is None:
        missing(f"{libcrypto.LIBRARY} cannot be opened: the v1 writer chains in Python")
    return fast


def test_the_chainer_hashes_without_evp_when_libcrypto_can(fast: Any) -> None:
    linker = chaining.chainer(fast)
    assert linker is not None
    handed = linker._handed[0]
    direct = libcrypto.direct()
    assert all((getattr(handed, f) != fast.ffi.NULL) == (direct is not None) for f in DIRECT_FIELDS)


def test_direct_and_evp_chain_the_same_bytes(fast: Any) -> None:
    if libcrypto.direct() is None:
        missing(f"{libcrypto.LIBRARY} has no SHA256_Init/Update/Final: enc_chain hashes through EVP alone")
    direct = chaining.chainer(fast)
    evp = chaining.chainer(fast)
    assert direct is not None and evp is not None
    for field in DIRECT_FIELDS:
        setattr(evp._handed[0], field, fast.ffi.NULL)
    rng = np.random.default_rng(5)
    prev = {"direct": "0" * 64, "evp": "0" * 64}
    first = 0
    for _ in range(30):
        rows = random_batch(rng)
        columns = tail_columns(rows)
        assert columns is not None
        n = len(rows)
        tails = encode.render(n, [*columns, END, b"\n"])
        readings = np.stack([rng.integers(0, 2**62, n), rng.integers(-(2**63), 2**63 - 1, n)], axis=1)
        written = {}
        for name, linker in (("direct", direct), ("evp", evp)):
            out = LineBuffer()
            done = linker.chain(tails, n, LEAD if n % 2 else None, first, readings, prev[name], out)
            assert done is not None
            size, prev[name], _ = done
            written[name] = out.room(0)[:size].tobytes()
        assert written["direct"] == written["evp"]
        assert prev["direct"] == prev["evp"]
        first += n

"""Fixtures of the fuzzer's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.verifier.compiled import forget_accelerators
from verifier.rules import fastpath


@pytest.fixture
def numpy_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The kernel without its compiled path (``NIC_SANDBOX_FASTPATH=0``), where checks.py judges every batch.

    A test that weakens checks.py (or ``PinTable.covers``, which only checks.py asks) must run here: with the
    accelerators on, the compiled doorbell judges a clean batch and the compiled classification
    (verifier/rules/classify.py) a refused one, both implementing the rules whole, so a numpy slip would never be
    asked.  ``make mutants`` judges a mutant of those files the same way (fuzz/mutants/targets.py).
    """
    monkeypatch.setenv(fastpath.SWITCH, "0")
    forget_accelerators()
    try:
        yield
    finally:
        forget_accelerators()

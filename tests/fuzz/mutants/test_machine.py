"""Each mutant is fuzzed on the machine that runs its code (fuzz/mutants/targets.py ``REFERENCE``).

With the accelerators on, the compiled doorbell judges a clean batch and the
compiled classification (verifier/rules/classify.py) a refused one, so the
numpy rules of checks.py judge nothing there: a slip in them would survive a
campaign on that machine whatever the fuzzer found.  Their mutants are
fuzzed with ``NIC_SANDBOX_FASTPATH=0`` (the user's switch, where checks.py
judges every batch); the C and the Python both machines run, with the
accelerators on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fuzz.campaign import run_campaign
from fuzz.mutants import targets
from fuzz.mutants.generate import all_mutants
from fuzz.mutants.workspace import environment
from ring.compiled import SWITCH
from tests.verifier.compiled import compiled_fast_path
from verifier.modes import shadow
from verifier.pins import PinTable

ROOT = Path(__file__).resolve().parents[3]


def test_the_numpy_rules_are_fuzzed_without_the_accelerators_and_the_rest_with_them() -> None:
    for file, functions in targets.REFERENCE.items():
        assert set(functions) <= set(targets.PYTHON[file]), "a reference function that is no mutation target"
    machines: Counter[tuple[str, bool]] = Counter()
    for m in all_mutants(ROOT):
        on = targets.accelerated(m.file, m.function)
        machines[m.file, on] += 1
        reference = m.file == "verifier/rules/checks.py" or (m.file, m.function) == (
            "verifier/pins.py",
            "PinTable.covers",
        )
        assert on != reference, m.id
    assert machines["verifier/rules/fastpath.c", False] == 0 and machines["verifier/rules/checks.py", True] == 0
    assert machines["verifier/pins.py", True] and machines["verifier/pins.py", False]


def test_the_environment_switches_the_accelerators(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SWITCH, "0")  # whatever the caller's shell says
    assert SWITCH not in environment(tmp_path)
    assert environment(tmp_path, accelerators=False)[SWITCH] == "0"
    assert environment(tmp_path, accelerators=False)["PYTHONPATH"] == str(tmp_path)


def test_the_compiled_machine_never_asks_the_numpy_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the split is right: a round of refused and clean batches on the default machine (its first round of
    blocks) classifies every batch without checks.py's ``check_tx``/``check_rx`` or ``PinTable.covers``."""
    compiled_fast_path(required=True)
    asked: Counter[str] = Counter()

    def counted(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            asked[name] += 1
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(shadow, "check_tx", counted("check_tx", shadow.check_tx))
    monkeypatch.setattr(shadow, "check_rx", counted("check_rx", shadow.check_rx))
    monkeypatch.setattr(PinTable, "covers", counted("covers", PinTable.covers))
    classes = ["kernel-tx", "hidden", "bad-length", "fragments", "use-after-unpin"]
    result = run_campaign("verifier", 1, classes, iterations=5 * len(classes), batch=64, arena_every=5)
    assert result.descriptors > 0 and not result.findings
    assert not asked, asked

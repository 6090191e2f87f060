"""The protection modes as objects: one per mode, chosen once, and the kernel asks them instead of branching."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ring.memory import PhysicalMemory
from verifier.kernel import Kernel
from verifier.modes.protection import Protection
from verifier.modes.select import MODES, mode_for
from world.scenario import parse

KERNEL = Path(__file__).resolve().parents[2] / "verifier" / "kernel.py"


@pytest.mark.parametrize("protection", list(Protection))
def test_every_protection_has_one_mode_object(protection: Protection) -> None:
    mode = mode_for(protection)
    assert mode.protection is protection and type(mode) is MODES[protection]
    assert mode.traps_doorbell == protection.traps_doorbell
    assert (mode.iommu is not None) == (protection is Protection.IOMMU)  # only iommu mode translates DMA


def test_the_kernel_default_is_the_scenarios_default() -> None:
    """A kernel built without a mode runs the mode a scenario gets when it names none (verifier)."""
    kernel = Kernel(PhysicalMemory(8 << 20, 1 << 20, seed=1))
    assert kernel.protection is parse("", "a scenario that names no mode").protection is Protection.VERIFIER


def test_kernel_py_never_asks_which_mode_it_runs() -> None:
    """No comparison with a ``Protection`` member or the kernel's ``protection`` in kernel.py: the mode decides."""
    tree = ast.parse(KERNEL.read_text())
    compared = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(
            isinstance(part, ast.Attribute)
            and (part.attr == "protection" or (isinstance(part.value, ast.Name) and part.value.id == "Protection"))
            for part in [node.left, *node.comparators]
        )
    ]
    assert compared == []
    assert "traps_doorbell" not in KERNEL.read_text().replace("self.mode.traps_doorbell", "")

"""Restructuring changes no behaviour: demos, attack results, fuzz reports, pcaps and audit logs, byte for byte.

The fixture was recorded on the code before the wave-2 restructuring
(commit faa73b8) by ``tests/behaviour_runs.py``; see there for what each
run is and how to record it again when a change of behaviour is meant.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.behaviour_runs import observe

FIXTURE = Path(__file__).parent / "fixtures" / "behaviour.json"


def test_every_run_behaves_as_recorded() -> None:
    expected = json.loads(FIXTURE.read_text())
    seen = observe()
    assert sorted(seen) == sorted(expected)
    for name in expected:
        assert seen[name] == expected[name], name

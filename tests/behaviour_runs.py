"""The user-visible runs whose results must not change when the code is only restructured.

Each run is a ``nic-sandbox`` command line with a fixed seed and size,
on the inline engine, with the deterministic audit clock asked for
(``--audit-clock virtual``: the default is the wall clock; invariant 7).
:func:`observe` runs them all and returns what a user sees: the JSON
reports with wall-clock figures and paths taken out, and a SHA-256 of
every pcap and audit log (byte for byte).  ``tests/fixtures/behaviour.json``
holds the answer recorded on the code before the wave-2 restructuring
(commit faa73b8); ``tests/test_behaviour_fixtures.py`` compares.

Record again, deliberately, only when a change of behaviour is intended:
``python -m tests.behaviour_runs > tests/fixtures/behaviour.json``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Report keys that measure time or name this run's temporary files: not behaviour.
VOLATILE = {"seconds", "mpps", "descriptors_per_second", "pcaps", "audit_log", "out"}
#: Report keys that name a file this run wrote: only its name is behaviour.
PATHS = {"case"}

MODES = ("none", "verifier", "iommu", "unsafe-inplace")
#: The audit clock these runs were recorded with: the deterministic one, asked for by name.
VIRTUAL = ("--audit-clock", "virtual")


def runs(tmp: Path) -> dict[str, tuple[list[str], list[Path]]]:
    """name -> (argv after ``nic-sandbox``, files whose bytes are part of the result)."""
    out: dict[str, tuple[list[str], list[Path]]] = {}
    pcap, log = tmp / "pingpong.pcap", tmp / "pingpong.jsonl"
    out["demo-pingpong"] = (
        ["demo", "--count", "300", "--pcap", str(pcap), "--audit-log", str(log), *VIRTUAL, "--json"],
        [pcap],
    )
    for mode in MODES:
        log = tmp / f"attack-{mode}.jsonl"
        argv = ["demo", "attack", "--protection", mode, "--audit-log", str(log), *VIRTUAL, "--json"]
        out[f"demo-attack-{mode}"] = (argv, [log])
    for mode in ("none", "verifier"):
        fz = tmp / f"fuzz-{mode}"
        argv = [
            "fuzz",
            "--protection",
            mode,
            "--iterations",
            "60",
            "--batch",
            "16",
            "--seed",
            "3",
            "--out",
            str(fz),
            *VIRTUAL,
        ]
        out[f"fuzz-{mode}"] = ([*argv, "--json"], [fz / "audit.jsonl"])
    return out


def scrub(value: Any) -> Any:
    """The report without its wall-clock figures and temporary paths."""
    if isinstance(value, dict):
        return {k: Path(v).name if k in PATHS else scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def observe(python: str = sys.executable, cwd: str | None = None) -> dict[str, Any]:
    """Run every command and return {name: {"exit", "report", "files": {name: sha256}}}."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name, (argv, files) in runs(tmp).items():
            proc = subprocess.run(
                [python, "-m", "sandbox", *argv], capture_output=True, text=True, timeout=600, cwd=cwd
            )
            try:
                report = scrub(json.loads(proc.stdout))
            except json.JSONDecodeError:
                report = {"unparsed": proc.stdout[-2000:], "stderr": proc.stderr[-2000:]}
            digests = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None for f in files}
            result[name] = {"exit": proc.returncode, "report": report, "files": digests}
    return result


if __name__ == "__main__":
    print(json.dumps(observe(), indent=1, sort_keys=True))

"""``nic-sandbox demo attack --nic virtio``: the graph attacks in modes none and verifier, side by side.

Under ``none`` the hostile graphs get through (a chain the device never
finished, DMA into the kernel's or alice's memory) and the two valid graphs
at the boundary stay safe; under ``verifier`` nothing gets through and each
hostile graph is refused with its own reason (the write-before-read chain,
harmless to this device, is refused too).  Modes a virtio NIC does not run
and flags that do not apply are refused in one line with exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

from sandbox.demos import attack_virtio
from tests.sandbox.test_cli import run_cli

REASONS = {
    "loop-next": "VIRTQ_CHAIN_LOOP",
    "next-of-size": "VIRTQ_NEXT_BEYOND",
    "indirect-loop": "VIRTQ_CHAIN_LOOP",
    "indirect-nested": "VIRTQ_INDIRECT_NESTED",
    "chain-size+1": "VIRTQ_CHAIN_TOO_LONG",
    "indirect-kernel": "ADDR_NOT_PINNED",
    "write-before-read": "VIRTQ_WRITE_BEFORE_READ",
    "avail-jump": "VIRTQ_AVAIL_JUMP",
    "used-ring": "REG_NOT_DOORBELL",
}
SAFE_IN_NONE = {"chain-of-size", "write-before-read", "rx-valid"}


def test_both_modes_side_by_side(tmp_path: Path) -> None:
    run = run_cli("demo", "attack", "--nic", "virtio", "--json", "--audit-log", str(tmp_path / "a.jsonl"))
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["modes"] == ["none", "verifier"]
    by = {(a["name"], a["protection"]): a for a in doc["attacks"]}
    assert {name for name, _ in by} == {name for name, _, _ in attack_virtio.ATTACKS}
    for name, _, _ in attack_virtio.ATTACKS:
        none, verifier = by[(name, "none")], by[(name, "verifier")]
        assert none["escaped"] is (name not in SAFE_IN_NONE), none
        assert not verifier["escaped"], verifier
        assert verifier["reasons"] == ([REASONS[name]] * (3 if name == "used-ring" else 1) if name in REASONS else [])
    assert "dma" in by[("race-next", "none")]["how"] and "liveness" in by[("loop-next", "none")]["how"]


def test_one_mode_and_the_refusals(tmp_path: Path) -> None:
    log = str(tmp_path / "a.jsonl")
    none = run_cli("demo", "attack", "--nic", "virtio", "--protection", "none", "--audit-log", log)
    assert none.returncode == 1 and "ESCAPED" in none.stdout and "protection verifier" not in none.stdout
    for flags, words in ((["--protection", "iommu"], "not iommu"), (["--engine", "threaded"], "--engine"),
                         (["--scenario", "x.toml"], "--scenario"), (["--nic", "qemu"], "invalid choice")):  # fmt: skip
        nic = [] if "--nic" in flags else ["--nic", "virtio"]
        bad = run_cli("demo", "attack", *nic, *flags, "--audit-log", log)
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

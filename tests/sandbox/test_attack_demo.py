"""The attack demo: leaks without protection, a won race in unsafe-inplace, nothing in verifier and iommu."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.demos import attack as attack_demo
from tests.attack_reasons import VERIFIER_REASON
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import read_records, verify
from verifier.modes.protection import Protection
from world import scenario

ROOT = Path(__file__).resolve().parents[2]
NAMES = [name for name, *_ in attack_demo.ATTACKS]


def run(mode: str, audit: MemoryAudit | AuditLog | None = None) -> attack_demo.AttackReport:
    scen = scenario.load(embedded="attack")
    scen = dataclasses.replace(scen, protection=Protection(mode))
    return attack_demo.run(scen, audit if audit is not None else MemoryAudit(), honest_frames=300)


def test_without_protection_the_attacks_leak() -> None:
    report = run("none")
    outcome = {r.name: r.succeeded for r in report.results}
    # every attack that does not depend on the bus breaking the access gets through
    assert outcome == {name: name != "addr-wrap" for name in NAMES}
    leaked = {r.name: r.evidence for r in report.results}
    assert b"\xcaKSECRET" in leaked["tx-kernel-memory"]  # a kernel canary, on the wire
    assert b"ALICE-SECRET:" in leaked["tx-other-tenant"]
    assert all(r.audit_seq is None for r in report.results)  # nothing checks, nothing is audited
    assert report.honest.clean


@pytest.mark.parametrize("mode", ["verifier", "iommu"])
def test_verifier_and_iommu_block_everything_and_audit(mode: str, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log, protection=mode) as audit:
        report = run(mode, audit)
    assert not any(r.succeeded for r in report.results)
    assert report.honest.clean
    records = {r["seq"]: r for r in read_records([log])}
    assert verify([log]).ok
    for r in report.results:
        if r.name == "toctou-race" and mode == "verifier":
            assert r.audit_seq is None  # nothing to refuse: the device only ever read the kernel's copy
            continue
        assert r.audit_seq is not None, r
        reason = records[r.audit_seq]["reason"]
        assert reason in r.reason
        if mode == "iommu":
            assert reason == "IOMMU_NOT_MAPPED"
    if mode == "verifier":
        by_name = {r.name: records[r.audit_seq]["reason"] for r in report.results if r.audit_seq is not None}
        assert by_name == VERIFIER_REASON
        owners = {records[r.audit_seq]["detail"].get("owner") for r in report.results if r.name.startswith("tx-")}
        assert owners == {"kernel", "tenant0"}


def test_unsafe_inplace_loses_the_race_and_only_the_race() -> None:
    report = run("unsafe-inplace")
    outcome = {r.name: r.succeeded for r in report.results}
    assert outcome == {name: name == "toctou-race" for name in NAMES}
    race = next(r for r in report.results if r.name == "toctou-race")
    assert "owned by kernel" in race.reason


def test_cli_json_and_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "a.jsonl"
    cmd = [sys.executable, "-m", "sandbox", "demo", "attack", "--audit-log", str(log)]
    done = subprocess.run(
        [*cmd, "--protection", "verifier", "--json"], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {
        "protection",
        "audit_log",
        "fsync",
        "fsync_batch",
        "fsync_interval_ms",
        "attacks",
        "honest_traffic",
    }
    assert [a["name"] for a in doc["attacks"]] == NAMES
    assert all(set(a) == {"name", "succeeded", "reason", "audit_seq"} for a in doc["attacks"])
    assert not any(a["succeeded"] for a in doc["attacks"])
    table = subprocess.run([*cmd, "--protection", "none"], capture_output=True, text=True, timeout=300, env=env)
    assert table.returncode == 1, table.stderr  # the fuzzer's convention: something got through
    assert "SUCCEEDED" in table.stdout and "KSECRET" in table.stdout  # the hexdump of the leaked canary
    assert verify([log]).ok  # the second run appended to the same chain


def test_pingpong_only_flags_are_refused_for_attack(capsys: pytest.CaptureFixture[str]) -> None:
    from sandbox import cli

    assert cli.main(["demo", "attack", "--count", "5"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --count 5" in err and len(err.strip().splitlines()) == 1

"""Invariant 7: with the inline engine, a scenario and a seed give the same wire bytes and the same audit log."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from driver.tenant.txq import TxQueue
from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from sandbox.demos import pingpong
from sandbox.flags import deterministic_clock
from verifier.audit.log import AuditLog
from verifier.modes.protection import Protection
from world import scenario
from world.build import World


def campaign(tmp: Path, name: str, seed: int) -> tuple[bytes, bytes]:
    """Honest pingpong (alice, bob), then hostile descriptors from mallory; return (pcap, audit log) bytes."""
    base = scenario.load(embedded="attack")
    scen = dataclasses.replace(base, protection=Protection.VERIFIER, seed=seed)
    pcap, log = tmp / f"{name}.pcap", tmp / f"{name}.jsonl"
    with (
        AuditLog(log, protection="verifier", clock=deterministic_clock()) as audit,
        World.build(scen, pcap=str(pcap), audit=audit) as world,
    ):
        assert pingpong.run(world, 500, 96, 32).clean
        tx = TxQueue(world.tenants["mallory"], "nic2", size=64)
        rng = np.random.default_rng(seed)
        for _ in range(20):  # kernel addresses, wraps, beyond memory: all refused, all audited
            slot = tx.tail
            tx.ring[slot]["addr"] = [0x3000, 2**64 - 8, world.memory.size - 4][int(rng.integers(0, 3))]
            tx.ring[slot]["length"] = int(rng.integers(1, 200))
            tx.ring[slot]["cmd"] = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
            tx.tail = (slot + 1) % tx.size
            tx.doorbell.write32(tx.handle.tail_offset, tx.tail)
            tx.reap()
    return pcap.read_bytes(), log.read_bytes()


def test_same_seed_same_wire_and_same_audit_log(tmp_path: Path) -> None:
    first = campaign(tmp_path, "a", seed=5)
    second = campaign(tmp_path, "b", seed=5)
    other = campaign(tmp_path, "c", seed=6)
    assert first == second
    assert first[1].count(b"\n") == 20  # one record per refused descriptor
    assert first != other

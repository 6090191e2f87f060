"""Every hostile chain of docs/peers.md's QEMU table through the kernel's verifier: the reason code the table names.

The chains are tests/driver/virtio_hostile.py's, the very ones QEMU's
virtio-net was measured with; here each is written by a tenant into its own
transmitq1 on an emulated virtio NIC under protection ``verifier`` and
notified.  The kernel must refuse it at the notify with the reason the table
gives (one audit record; nothing reaches the device or the wire).  Then the
receive side: a receive buffer in kernel memory or another tenant's, and a
virtqueue (its used ring) in memory the tenant does not own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ring import virtio
from tests.driver.virtio_hostile import BY_NAME, CASES, FRAME, KERNEL_ADDRESS, Case
from tests.virtio_rig import RawVirtq, TenantTx, build, wire_log
from verifier.kernel import KernelError
from verifier.rules import reasons as R
from world.build import World
from world.virtio import EmulatedVirtio

PEERS = Path(__file__).resolve().parents[2] / "docs" / "peers.md"
#: The reason the verifier gives each chain of the table (docs/peers.md's right column holds these names).
EXPECTED = {
    "loop_next": "VIRTQ_CHAIN_LOOP",
    "loop_indirect": "VIRTQ_CHAIN_LOOP",
    "chain_size_plus_1": "VIRTQ_CHAIN_LOOP",
    "indirect_size_plus_1": "VIRTQ_INDIRECT_TOO_BIG",
    "indirect_in_indirect": "VIRTQ_INDIRECT_NESTED",
    "write_before_read": "VIRTQ_WRITE_BEFORE_READ",
    "next_is_size": "VIRTQ_NEXT_BEYOND",
    "indirect_len_not_16": "VIRTQ_INDIRECT_LEN",
    "avail_jump": "VIRTQ_AVAIL_JUMP",
    "head_is_size": "VIRTQ_HEAD_BEYOND",
    "zero_length": "",  # accepted: the kernel leaves the empty descriptor out of its copy (see below)
    "kernel_memory": "ADDR_NOT_PINNED",
    "only_writable": "VIRTQ_NET_HDR_SHORT",
    "length_overflow": "VIRTQ_LEN_OVERFLOW",
    "short_header": "VIRTQ_NET_HDR_SHORT",
}


@contextmanager
def verifier_world() -> Iterator[World[EmulatedVirtio]]:
    with build("verifier") as world:
        yield world


def reasons(world: World[EmulatedVirtio]) -> list[str]:
    return [str(r["reason"]) for r in world.kernel.audit.since(0) if isinstance(r, dict)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_verifier_refuses_each_hostile_chain_with_the_tables_reason(case: Case) -> None:
    with verifier_world() as world:
        wire = wire_log(world)
        queue = RawVirtq(world.tenants["alice"], "nic0", virtio.TRANSMITQ)
        case.build(TenantTx(queue, world.memory))
        nic = world.backend.nics["nic0"]
        expected = EXPECTED[case.name]
        assert reasons(world) == ([expected] if expected else [])
        assert nic.counters.broken == 0  # the device is as healthy as before
        # refused: nothing reached the device.  The empty descriptor's chain goes out without it: its first
        # 12 bytes (the frame's) are the header, as QEMU reads that chain too
        assert wire == ([] if expected else [FRAME[virtio.VIRTIO_NET_HDR_SIZE :]])


def test_every_case_has_its_reason_and_each_reason_is_a_stable_code() -> None:
    """And docs/peers.md's table names the same reason in each case's row."""
    assert set(EXPECTED) == set(BY_NAME)
    assert all(name in R.BY_NAME for name in EXPECTED.values() if name)


def test_an_rx_buffer_in_kernel_memory_is_refused() -> None:
    with verifier_world() as world:
        rx = RawVirtq(world.tenants["bob"], "nic1", virtio.RECEIVEQ)
        before = len(reasons(world))
        rx.set(0, 2048, virtio.VIRTQ_DESC_F_WRITE, addr=KERNEL_ADDRESS)
        rx.post(0)
        assert reasons(world)[before:] == ["ADDR_NOT_PINNED"]


def test_an_rx_buffer_in_another_tenants_memory_is_refused() -> None:
    with verifier_world() as world:
        alice = RawVirtq(world.tenants["alice"], "nic0", virtio.RECEIVEQ)
        rx = RawVirtq(world.tenants["bob"], "nic1", virtio.RECEIVEQ)
        before = len(reasons(world))
        rx.set(0, 2048, virtio.VIRTQ_DESC_F_WRITE, addr=alice.buf(0))
        rx.post(0)
        assert reasons(world)[before:] == ["ADDR_NOT_PINNED"]


def test_a_virtqueue_in_memory_the_tenant_does_not_own_is_refused_at_open() -> None:
    """The used ring is part of the virtqueue's region: the kernel checks the whole region is the tenant's."""
    with verifier_world() as world:
        alice, bob = world.tenants["alice"], world.tenants["bob"]
        theirs = alice.alloc_dma(virtio.VirtqLayout.of(8).nbytes)
        with pytest.raises(KernelError):
            bob.open_virtqueue("nic1", virtio.RECEIVEQ, theirs, 8)


def test_docs_peers_table_names_each_reason() -> None:
    """Each hostile chain's row in docs/peers.md names the reason the kernel gave it (or says it is accepted)."""
    rows = {line.split(" | ")[0][2:]: line for line in PEERS.read_text().splitlines() if line.startswith("| ")}
    for case in CASES:
        row = rows[case.what]
        expected = EXPECTED[case.name]
        assert (f"`{expected}`" in row) if expected else ("**accepted**" in row), case.name

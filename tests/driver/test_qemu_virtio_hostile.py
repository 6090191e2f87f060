"""What QEMU 7.2's virtio-net does with each hostile chain raw (docs/peers.md's table), and behind the kernel."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from driver.qemu.args import VIRTIO_NET
from driver.qemu.qtest import QtestError
from ring import virtio
from tests.driver.qemu_rig import Rig, need_qemu, qemu_rig
from tests.driver.virtio_hostile import ABORT, BROKEN, BY_NAME, CASES, FRAME, INNER, KERNEL_ADDRESS, SENT, Case
from tests.driver.virtio_rig import QUEUE_SIZE, VirtioPort, virtio_ports
from tests.virtio_rig import RawVirtq, TenantTx
from verifier.audit.memory import MemoryAudit
from world import scenario
from world.qemu_virtio import fit_rings, qemu_virtio_world

pytestmark = pytest.mark.privileged
PREFIX = "qemu-system-x86_64: "
BROKEN_WAIT_S = 2.0


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with qemu_rig(nics=1, model=VIRTIO_NET) as rig:
        yield rig


def _run(rig: Rig, port: VirtioPort, case: Case, dies: bool = False) -> int:
    """Restart the device, put the chain on transmitq1, notify; returns the mark of QEMU's log before it.

    ``dies``: the notify kills QEMU, which may then never answer it (whether its TX bottom half runs before
    the qtest answer goes out is QEMU's scheduling), so a lost answer is expected there and nowhere else.
    """
    port.start()
    mark = rig.machine.log_size()
    case.build(port.tx)
    try:
        port.nic.notify(virtio.TRANSMITQ)
        rig.machine.connection.flush()
    except QtestError:
        if not dies:
            raise
    return mark


@pytest.mark.parametrize("case", [c for c in CASES if c.qemu != ABORT], ids=lambda c: c.name)
def test_qemu_does_what_the_table_says(rig: Rig, case: Case) -> None:
    port = virtio_ports(rig)["nic0"]
    mark = _run(rig, port, case)
    if case.qemu == BROKEN:
        deadline = time.monotonic() + BROKEN_WAIT_S
        while not port.nic.needs_reset() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert port.nic.needs_reset()
        assert rig.machine.log_since(mark) == f"{PREFIX}{case.message}\n"
        assert port.tx.used_entries(1, timeout_s=0) == []  # the chain never completes
        assert rig.quiet_wire("nic0", 0.02)
        return
    assert case.qemu == SENT
    frames = rig.wire("nic0", len(case.wire))
    assert [len(f) for f in frames] == list(case.wire)
    assert rig.quiet_wire("nic0", 0.02)
    assert [e[0] for e in port.tx.used_entries(len(case.wire))] == [0] * len(case.wire)
    assert not port.nic.needs_reset()
    assert rig.machine.log_since(mark) == ""
    if case is BY_NAME["kernel_memory"]:  # the kernel's bytes, canary and all, on the wire
        assert frames[0] == rig.memory.view(KERNEL_ADDRESS, len(FRAME)).tobytes()
    elif case is BY_NAME["indirect_in_indirect"]:  # the inner table's own 16 bytes are sent as data
        assert frames[0] == port.tx.bytes_at(port.tx.buffer(INNER), virtio.VIRTQ_DESC_SIZE).tobytes()
    else:  # the frame, once per chain popped: with avail idx 9 ahead, slot 0's chain 9 times
        assert all(f == FRAME for f in frames)


@pytest.mark.parametrize("case", [c for c in CASES if c.qemu == ABORT], ids=lambda c: c.name)
def test_qemu_dies_on_a_tx_chain_shorter_than_the_header(case: Case) -> None:
    """QEMU 7.2's virtio_net_flush_tx asserts in iov_copy (fixed upstream in 2024): one chain kills the machine."""
    with qemu_rig(nics=1, model=VIRTIO_NET) as rig:
        port = virtio_ports(rig)["nic0"]
        mark = _run(rig, port, case, dies=True)
        assert rig.machine.process is not None
        assert rig.machine.process.wait(BROKEN_WAIT_S) == -signal.SIGABRT
        assert rig.machine.log_since(mark) == f"{PREFIX}{case.message}\n"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_behind_the_kernel_qemu_survives_every_chain(case: Case) -> None:
    """The same chain written by a tenant, the kernel's verifier in front of QEMU (``--nic qemu-virtio``).

    QEMU walks only the kernel's shadow virtqueue: every refused chain stays out of it, so QEMU is never broken
    and never killed, and the one accepted chain (an empty descriptor, left out of the kernel's copy) is sent.
    """
    need_qemu()
    scen = fit_rings(scenario.load())
    with qemu_virtio_world(scen, pcap=False, audit=MemoryAudit()) as world:
        queue = RawVirtq(world.tenants["alice"], "nic0", virtio.TRANSMITQ)
        mark = world.backend.machine.log_size()
        case.build(TenantTx(queue, world.memory))
        accepted = case is BY_NAME["zero_length"]
        deadline = time.monotonic() + BROKEN_WAIT_S
        while accepted and not queue.ready() and time.monotonic() < deadline:
            time.sleep(0.001)
        heads, lens = queue.take_used()
        nic = world.backend.nics["nic0"]
        assert world.backend.machine.alive()
        assert not nic.read32(virtio.STATUS) & virtio.STATUS_DEVICE_NEEDS_RESET
        assert world.backend.machine.log_since(mark) == ""
        if accepted:
            assert (heads.tolist(), lens.tolist()) == ([0], [0])
        elif case is not BY_NAME["avail_jump"]:  # refused chains complete at once, with the refused mark
            assert heads.tolist() == [0 if case is not BY_NAME["head_is_size"] else QUEUE_SIZE]
            assert lens.tolist() == [virtio.VIRTQ_USED_LEN_REFUSED]
        assert len(world.kernel.audit.counters) == (0 if accepted else 1)

"""What QEMU 7.2's virtio-net does with each hostile chain, raw (no verifier): the facts of docs/peers.md's table."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from driver.qemu.args import VIRTIO_NET
from ring import virtio
from tests.driver.qemu_rig import Rig, qemu_rig
from tests.driver.virtio_hostile import ABORT, BROKEN, BY_NAME, CASES, FRAME, INNER, KERNEL_ADDRESS, SENT, Case
from tests.driver.virtio_rig import VirtioPort, virtio_ports

pytestmark = pytest.mark.privileged
PREFIX = "qemu-system-x86_64: "
BROKEN_WAIT_S = 2.0


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with qemu_rig(nics=1, model=VIRTIO_NET) as rig:
        yield rig


def _run(rig: Rig, port: VirtioPort, case: Case) -> int:
    """Restart the device, put the chain on transmitq1, notify; returns the mark of QEMU's log before it."""
    port.start()
    mark = rig.machine.log_size()
    case.build(port.tx)
    port.nic.notify(virtio.TRANSMITQ)
    rig.machine.connection.flush()
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
        mark = _run(rig, port, case)
        assert rig.machine.process is not None
        assert rig.machine.process.wait(BROKEN_WAIT_S) == -signal.SIGABRT
        assert rig.machine.log_since(mark) == f"{PREFIX}{case.message}\n"

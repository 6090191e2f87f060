"""``nic-sandbox demo --nic qemu-virtio``: the virtio pingpong through QEMU's virtio-net-pci, byte-exact in QEMU's pcap.

Both protection modes a virtio NIC supports run end to end (in ``verifier``
QEMU walks the kernel's shadow virtqueues; in ``none`` the tenants' own),
the command line's refusals are one line with exit 2, and no QEMU process
outlives a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from device.pcap import read_pcap
from driver.qemu.virtio_net import QEMU_QUEUE_MAX
from ring import virtio
from sandbox import cli
from sandbox.demos import pingpong
from tests.driver.qemu_rig import need_qemu
from tests.sandbox.test_demo_pcap import flow
from tests.sandbox.test_qemu_demo import qemu_children
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection
from world import scenario
from world.qemu_virtio import fit_rings, qemu_virtio_world
from world.traffic import swap_endpoints
from world.virtio import virtio_queues

COUNT = 1500


@pytest.mark.privileged
@pytest.mark.parametrize("protection", ["verifier", "none"])
def test_pingpong_through_qemus_virtio_net_is_byte_exact_in_its_pcap(protection: str, tmp_path: Path) -> None:
    need_qemu()
    path = tmp_path / "qv.pcap"
    scen = dataclasses.replace(fit_rings(scenario.load()), protection=Protection(protection))
    with qemu_virtio_world(scen, pcap=str(path), audit=MemoryAudit()) as world:
        pid = world.backend.machine.pid
        report = pingpong.run(world, COUNT, 64, 32, queues=virtio_queues)
        assert sum(world.kernel.audit.counters.values()) == 0
        if protection == "verifier":  # QEMU's transmitq1 is the kernel's shadow, not the tenant's areas
            shadow = world.kernel.virtio.nics["nic0"].shadows[virtio.TRANSMITQ].shadow
            bus = world.backend.nics["nic0"]
            bus.write32(virtio.QUEUE_SEL, virtio.TRANSMITQ)
            desc = bus.read32(virtio.QUEUE_DESC_LOW) | bus.read32(virtio.QUEUE_DESC_HIGH) << 32
            assert desc == shadow.phys + shadow.layout.desc
    assert report.clean and report.forward.received == report.echo.received == COUNT
    assert report.missed == {"nic0": 0, "nic1": 0}
    frames = [frame for _t, frame in read_pcap(path)]  # QEMU's filter-dump of nic0, both directions
    f = flow()
    seqs = np.arange(COUNT, dtype=np.uint64)
    assert [x for x in frames if x[6:12] == f.src_mac] == [bytes(row) for row in f.expected(seqs)]
    assert [x for x in frames if x[6:12] == f.dst_mac] == [bytes(row) for row in swap_endpoints(f.expected(seqs))]
    assert pid not in qemu_children(os.getpid())


def test_the_demo_caps_rings_at_qemus_queue_size() -> None:
    scen = fit_rings(scenario.load())
    assert scenario.load().tenants[0].ring > QEMU_QUEUE_MAX  # the default asks for more than QEMU takes
    assert {t.ring for t in scen.tenants} == {QEMU_QUEUE_MAX}


@pytest.mark.privileged
def test_cli_runs_the_qemu_virtio_pingpong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_qemu()
    code = cli.main(["demo", "--nic", "qemu-virtio", "--count", "500", "--json", "--pcap", str(tmp_path / "q.pcap"),
                     "--audit-log", str(tmp_path / "audit.jsonl")])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["clean"] is True and report["nic"] == "qemu-virtio"
    assert report["protection"] == "verifier" and report["rejected"] == 0
    assert [d["received"] for d in report["directions"]] == [500, 500]
    assert len(read_pcap(tmp_path / "q.pcap")) == 1000
    assert not qemu_children(os.getpid())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protection", "iommu"], "--nic qemu-virtio supports --protection none and verifier, not iommu"),
        (["--protection", "unsafe-inplace"], "not unsafe-inplace"),
        (["--engine", "threaded"], "--engine applies to emulated e1000 NICs"),
        (["--batch", "auto"], "--batch auto tunes the e1000 queues' bursts: not with --nic qemu-virtio"),
    ],
)
def test_what_qemu_virtio_refuses_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "--nic", "qemu-virtio", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1

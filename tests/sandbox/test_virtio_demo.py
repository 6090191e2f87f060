"""``nic-sandbox demo --nic virtio``: the pingpong on virtio-net split virtqueues, byte-exact, with its pcap.

Both protection modes it supports are run end to end; the modes it does not
support, the threaded engine, ``--batch auto`` and a ring that is no
virtqueue size are refused in one line with exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device.pcap import read_pcap
from sandbox import cli
from sandbox.demos import pingpong
from tests.sandbox.test_cli import run_cli
from tests.sandbox.test_demo_pcap import flow
from tests.virtio_rig import build
from world import scenario
from world.traffic import swap_endpoints
from world.virtio import virtio_queues

COUNT = 600


@pytest.mark.parametrize("protection", ["verifier", "none"])
def test_pingpong_on_virtio_is_byte_exact_in_its_pcap(protection: str, tmp_path: Path) -> None:
    path = tmp_path / "v.pcap"
    with build(protection, pcap=str(path)) as world:
        report = pingpong.run(world, COUNT, 64, 32, queues=virtio_queues)
        assert sum(world.kernel.audit.counters.values()) == 0
    assert report.clean and report.forward.received == report.echo.received == COUNT
    assert report.missed == {"nic0": 0, "nic1": 0}
    frames = [frame for _t, frame in read_pcap(path)]
    f = flow()
    sent = [bytes(row) for row in f.expected(np.arange(COUNT, dtype=np.uint64))]
    echoed = [bytes(row) for row in swap_endpoints(f.expected(np.arange(COUNT, dtype=np.uint64)))]
    assert [x for x in frames if x[6:12] == f.src_mac] == sent
    assert [x for x in frames if x[6:12] == f.dst_mac] == echoed


def test_cli_runs_the_virtio_pingpong(tmp_path: Path) -> None:
    done = run_cli(
        "demo", "--nic", "virtio", "--count", "300", "--json", "--pcap", str(tmp_path / "v.pcap"),
        "--audit-log", str(tmp_path / "audit.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] is True and report["nic"] == "virtio" and report["rejected"] == 0
    assert [d["received"] for d in report["directions"]] == [300, 300]
    assert len(read_pcap(tmp_path / "v.pcap")) == 600


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--protection", "iommu"], "--nic virtio supports --protection none and verifier, not iommu"),
        (["--protection", "unsafe-inplace"], "not unsafe-inplace"),
        (["--engine", "threaded"], "the virtio device runs inline"),
        (["--batch", "auto"], "not with --nic virtio"),
    ],
)
def test_what_virtio_does_not_support_is_one_line_and_exit_2(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "--nic", "virtio", "--no-pcap", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("ring = 512          ", "ring = 24          "), "ring 24 is not a virtqueue size"),
        (('protection = "verifier"', 'protection = "iommu"'), "protection iommu: virtio NICs support"),
    ],
)
def test_a_scenario_virtio_cannot_run_is_one_line_and_exit_2(
    edit: tuple[str, str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = scenario.default_text()
    assert edit[0] in text
    path = tmp_path / "s.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    assert cli.main(["demo", "--nic", "virtio", "--scenario", str(path), "--no-pcap", "--count", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(path) in err


def test_same_seed_same_pcap_bytes(tmp_path: Path) -> None:
    """Invariant 7 holds on virtio too: the device runs inline, the cable's clock is virtual."""
    paths = [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for path in paths:
        with build("verifier", pcap=str(path)) as world:
            assert pingpong.run(world, 200, 64, 16, queues=virtio_queues).clean
    assert paths[0].read_bytes() == paths[1].read_bytes()

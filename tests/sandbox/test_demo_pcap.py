"""The pingpong demo end to end: every byte checked, and the pcap read back by parsers nobody here wrote."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from sandbox.demos import pingpong
from tests.needs import need_tool
from world import scenario
from world.build import World
from world.traffic import UdpFlow, swap_endpoints

COUNT = 600


def run_demo(tmp_path: Path, name: str = "pp.pcap", seed: int | None = None, batch: int = 32) -> tuple[Path, object]:
    scen = scenario.load()
    if seed is not None:
        scen = dataclasses.replace(scen, seed=seed)
    path = tmp_path / name
    with World.build(scen, pcap=str(path)) as world:
        report = pingpong.run(world, COUNT, 64, batch)
    return path, report


def flow(seed: int = 1, size: int = 64) -> UdpFlow:
    scen = scenario.load()
    a, b = scen.tenants[:2]
    mac = {n.name: n.mac for n in scen.nics}
    return UdpFlow(mac[a.nic], mac[b.nic], a.ip, b.ip, size, seed)


def test_demo_delivers_every_frame_intact(tmp_path: Path) -> None:
    _, report = run_demo(tmp_path)
    assert isinstance(report, pingpong.PingPongReport)
    assert report.clean
    assert report.forward.received == COUNT
    assert report.echo.received == COUNT
    assert report.missed == {"nic0": 0, "nic1": 0}


def test_pcap_frames_equal_what_was_sent_scapy(tmp_path: Path) -> None:
    path, _ = run_demo(tmp_path)
    packets = rdpcap(str(path))
    assert len(packets) == 2 * COUNT
    f = flow()
    sent = f.expected(np.arange(COUNT, dtype=np.uint64))
    echoed = swap_endpoints(sent)
    forward = [bytes(p) for p in packets if bytes(p)[6:12] == f.src_mac]
    back = [bytes(p) for p in packets if bytes(p)[6:12] == f.dst_mac]
    assert forward == [bytes(row) for row in sent]
    assert back == [bytes(row) for row in echoed]
    # scapy agrees that every UDP checksum is right
    for raw in forward[:50] + back[:50]:
        pkt = Ether(raw)
        claimed = pkt[UDP].chksum
        del pkt[UDP].chksum
        assert Ether(bytes(pkt))[UDP].chksum == claimed


def test_pcap_read_by_tcpdump(tmp_path: Path) -> None:
    tcpdump = need_tool("tcpdump")
    path, _ = run_demo(tmp_path)
    out = subprocess.run(
        [tcpdump, "-nn", "-vv", "-r", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    headers = [line for line in out.splitlines() if " > " in line and "UDP" in line]
    assert len(headers) == 2 * COUNT
    assert all("[udp sum ok]" in line for line in headers)
    assert sum("198.18.0.1.9000 > 198.18.0.2.9001" in line for line in headers) == COUNT
    assert sum("198.18.0.2.9001 > 198.18.0.1.9000" in line for line in headers) == COUNT


def test_same_seed_gives_byte_identical_pcaps(tmp_path: Path) -> None:
    first, _ = run_demo(tmp_path, "a.pcap", seed=7)
    second, _ = run_demo(tmp_path, "b.pcap", seed=7)
    other, _ = run_demo(tmp_path, "c.pcap", seed=8)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_batch_size_does_not_change_the_bytes_sent(tmp_path: Path) -> None:
    small, _ = run_demo(tmp_path, "small.pcap", batch=1)
    large, _ = run_demo(tmp_path, "large.pcap", batch=256)
    frames_small = sorted(bytes(p) for p in rdpcap(str(small)))
    frames_large = sorted(bytes(p) for p in rdpcap(str(large)))
    assert frames_small == frames_large


def test_threaded_engine_delivers_everything(tmp_path: Path) -> None:
    scen = scenario.load()
    scen = dataclasses.replace(scen, engine=scenario.EngineMode.THREADED)
    with World.build(scen, pcap=False) as world:
        report = pingpong.run(world, 2000, 128, 32)
    assert report.forward.corrupt == report.echo.corrupt == 0
    assert report.forward.duplicates == report.echo.duplicates == 0
    # the threaded device can only lose frames to a full RX ring, and then MPC says so
    assert report.forward.lost == report.missed["nic1"]
    assert report.echo.lost == report.missed["nic0"]
    assert report.forward.received + report.missed["nic1"] == 2000


def test_large_frames_roundtrip(tmp_path: Path) -> None:
    scen = scenario.load()
    with World.build(scen, pcap=False) as world:
        report = pingpong.run(world, 300, 1518, 16)
    assert report.clean
    assert report.forward.bytes == 300 * 1514

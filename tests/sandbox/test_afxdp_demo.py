"""``nic-sandbox demo afxdp`` end to end, and its cleanup on exit, on error and on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from driver.afxdp.abi import STATISTICS_FIELDS
from driver.netns import namespaces
from sandbox.cli import main
from sandbox.demos.afxdp import Direction
from tests.driver.afxdp_env import need_afxdp
from world.traffic import UdpFlow

pytestmark = pytest.mark.privileged


def _ours(pid: int) -> list[str]:
    return [n for n in namespaces() if n.startswith("nicsb-demo-") and f"-{pid}-" in n]


def test_demo_sends_and_receives_every_frame_byte_exact(capsys: pytest.CaptureFixture[str]) -> None:
    need_afxdp()
    assert main(["demo", "afxdp", "--count", "3000", "--size", "128", "--batch", "100", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is True
    tx, rx = report["directions"]
    for d in (tx, rx):
        assert d["sent"] == d["received"] == 3000
        assert d["lost"] == d["corrupt"] == d["duplicates"] == 0
    stats = report["xdp_statistics"]
    assert tuple(stats) == STATISTICS_FIELDS  # struct xdp_statistics, in the header's order
    assert stats["tx_invalid_descs"] == stats["rx_dropped"] == 0
    rings = report["rings"]
    assert rings["tx"] == {"producer": 3000, "consumer": 3000}
    assert rings["rx"]["producer"] == rings["rx"]["consumer"] == 3000
    assert rings["completion"]["consumer"] == 3000
    assert report["zerocopy"] is False
    assert _ours(os.getpid()) == []


def test_demo_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    need_afxdp()
    assert main(["demo", "afxdp", "--count", "500"]) == 0
    out = capsys.readouterr().out
    assert "XDP_STATISTICS" in out and "tx_invalid_descs" in out
    assert "every frame arrived intact" in out


def test_a_direction_judges_frames_byte_for_byte() -> None:
    """The pingpong demo's judge: a duplicate, a damaged byte and a wrong length each count, alone."""
    flow = UdpFlow(bytes(6), bytes.fromhex("020000000001"), "198.18.1.1", "198.18.1.2", 64)
    d = Direction("test", space=4, expected=4)
    good = [row.tobytes() for row in flow.expected(np.arange(4, dtype=np.uint64))]
    damaged = bytearray(good[3])
    damaged[-1] ^= 0xFF
    d.check_frames([good[0], good[2], good[1], good[1], bytes(damaged), good[0][:-1]], flow)
    # 1 after 2 is reordered, and so is its duplicate; 3 was damaged, so it never arrived intact
    assert (d.sent, d.received, d.duplicates, d.corrupt, d.out_of_order, d.lost) == (4, 6, 1, 2, 2, 1)
    assert d.as_dict()["sent"] == 4


def test_demo_rejects_flags_of_the_simulated_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "afxdp", "--pcap", "x.pcap"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--pcap" in err and "afxdp" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_demo_leaves_nothing_behind(sig: signal.Signals) -> None:
    need_afxdp()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "demo", "afxdp", "--count", "100000000", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not _ours(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _ours(proc.pid), "the demo never created its namespace"
        time.sleep(0.3)  # well inside the run
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err  # 130 after Ctrl-C, 143 after SIGTERM (sandbox/signals.py)
    assert "Traceback" not in err
    assert _ours(proc.pid) == []

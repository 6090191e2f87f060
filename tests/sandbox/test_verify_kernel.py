"""The xdp verifier against the real kernel: ``nic-sandbox verify --format xdp --against kernel`` must agree.

Over 10,000 generated descriptors of every class (fuzz/xdp_cases.py), in
aligned and unaligned mode, with and without a tx metadata area, and every
hand-written boundary of tests/verifier/test_xdp_rules.py (descriptors and
UMEM registration), each judged by the verifier and by a real AF_XDP socket (driver/afxdp/probe.py) in a private
network namespace.  One disagreement fails the test and is printed with its
descriptor.  Needs root and AF_XDP: outside CI it skips with one line; under
CI=true it fails instead (tests/needs.py).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from driver.afxdp.probe import kernel_tx_verdicts
from ring.descriptors import XDP_PKT_CONTD
from sandbox import cli
from sandbox.commands.xdp_jsonl import write_descriptors
from tests.driver.afxdp_env import need_afxdp
from tests.verifier import test_xdp_rules as rules

pytestmark = pytest.mark.privileged

PER_UMEM = 2600
#: (umem flags, seed): aligned and unaligned, without and with a metadata area.
UMEMS = [
    (["--umem-size", "0x400000", "--chunk-size", "2048"], 1),
    (["--umem-size", "0x400000", "--chunk-size", "4096", "--tx-metadata-len", "16"], 2),
    (["--umem-size", "3000000", "--chunk-size", "3000", "--unaligned"], 3),
    (["--umem-size", "0x400000", "--chunk-size", "2048", "--unaligned", "--tx-metadata-len", "24"], 4),
]
assert PER_UMEM * len(UMEMS) >= 10_000


def against_kernel(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], dict]:
    """Run the verify command in-process; return its exit code, per-descriptor verdicts and the agreement."""
    need_afxdp()
    code = cli.main(["verify", "--format", "xdp", *args, "--against", "kernel", "--json"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    summary = lines.pop()
    assert summary["against"] == "kernel"
    return code, lines, summary


@pytest.mark.parametrize(("umem", "seed"), UMEMS, ids=["aligned", "aligned-meta16", "unaligned", "unaligned-meta24"])
def test_generated_descriptors_agree_with_the_kernel(
    umem: list[str], seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, verdicts, summary = against_kernel([*umem, "--generate", str(PER_UMEM), "--seed", str(seed)], capsys)
    assert summary["descriptors"] == len(verdicts) == PER_UMEM
    assert summary["disagreements"] == [], json.dumps(summary["disagreements"][:20], indent=1)
    assert code == 0 and summary["agree"] == PER_UMEM
    assert summary["accepted_by_both"] > 300 and summary["rejected_by_both"] > 300  # both sides exercised


@pytest.mark.parametrize(
    ("umem", "cases"),
    [
        (rules.ALIGNED, [(a, n, o, r) for a, n, o, r in rules.ALIGNED_CASES]),
        (rules.ALIGNED_META, [(a, n, rules.M, r) for a, n, r in rules.ALIGNED_META_CASES]),
        (rules.UNALIGNED, [(a, n, 0, r) for a, n, r in rules.UNALIGNED_CASES]),
        (rules.UNALIGNED_META, [(a, n, rules.M, r) for a, n, r in rules.UNALIGNED_META_CASES]),
    ],
    ids=["aligned", "aligned-meta16", "unaligned", "unaligned-meta24"],
)
def test_every_boundary_agrees_with_the_kernel(
    umem: Any, cases: list[tuple[int, int, int, str | None]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each hand-written edge, as a packet of its own (XDP_PKT_CONTD cleared), on the UMEM its table is for."""
    rows = rules.descs(*[(a, n, o & ~XDP_PKT_CONTD) for a, n, o, _ in cases])
    path = tmp_path / "edges.jsonl"
    path.write_text("".join(f"{line}\n" for line in write_descriptors(rows, [""] * len(cases))))
    flags = ["--umem-size", str(umem.size), "--chunk-size", str(umem.chunk_size)]
    flags += ["--unaligned"] * umem.unaligned + ["--tx-metadata-len", str(umem.tx_metadata_len)]
    code, verdicts, summary = against_kernel([*flags, "--input", str(path)], capsys)
    assert summary["disagreements"] == [], json.dumps(summary["disagreements"], indent=1)
    assert code == 0
    want_accepted = [reason is None and not (o & rules.M and umem.tx_metadata_len == 0) for _, _, o, reason in cases]
    assert [v["accepted"] for v in verdicts] == want_accepted


@pytest.mark.parametrize(
    ("size", "chunk", "unaligned", "meta", "ok"), [c for c in rules.REGISTRATION_CASES if 0 < c[0] <= 1 << 22]
)
def test_registration_rules_agree_with_the_kernel(size: int, chunk: int, unaligned: bool, meta: int, ok: bool) -> None:
    """What ``XdpUmem`` refuses, ``setsockopt(XDP_UMEM_REG)`` refuses with EINVAL, and only that."""
    need_afxdp()
    one = rules.descs((0, 64, 0))
    if ok:
        assert len(kernel_tx_verdicts(one, size, chunk, unaligned, meta)) == 1
    else:
        with pytest.raises(OSError) as refused:
            kernel_tx_verdicts(one, size, chunk, unaligned, meta)
        assert refused.value.errno == errno.EINVAL, refused.value

"""The xdp verifier against the real kernel: ``nic-sandbox verify --format xdp --against kernel`` must agree.

Over 10,000 generated descriptors of every class (fuzz/xdp_cases.py), in
aligned and unaligned mode, with and without a tx metadata area, and every
hand-written boundary of tests/verifier/test_xdp_rules.py (descriptors and
UMEM registration), each judged by the verifier and by a real AF_XDP socket (driver/afxdp/probe.py) in a private
network namespace.  The metadata in front of the buffers is zero, random (flags
with unknown bits, checksum fields around the length; in the JSON Lines input
and in a UMEM image), or the generator's.  One disagreement fails the test and is
printed with its descriptor.  Needs root and AF_XDP: outside CI it skips with one line; under
CI=true it fails instead (tests/needs.py).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driver.afxdp.probe import kernel_tx_verdicts
from ring.descriptors import XDP_DESC, XDP_PKT_CONTD, XDP_TX_METADATA, XDP_TXMD_FLAGS_CHECKSUM, XSK_TX_METADATA
from sandbox import cli
from sandbox.commands.verify import running_kernel_rules
from sandbox.commands.xdp_jsonl import write_descriptors
from tests.driver.afxdp_env import need_afxdp
from tests.verifier import test_xdp_rules as rules
from verifier.rules.xdp import TXMD_KNOWN_FLAGS, registration_error

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
    if "--tx-metadata-len" in umem:  # the generated random metadata was read, and some of it refused
        assert {"XDP_METADATA_FLAGS_UNKNOWN", "XDP_METADATA_CSUM_BEYOND_LEN"} <= {v["reason"] for v in verdicts}


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


REGISTRATIONS = [c[:4] for c in rules.REGISTRATION_CASES if 0 < c[0] <= 1 << 22] + [
    (size, chunk, unaligned, length)
    for size, chunk, unaligned in [(1 << 17, 2048, False), (1 << 17, 4096, False), (30_000, 3000, True)]
    for length in rules.TX_METADATA_LENS
]


@pytest.mark.parametrize(("size", "chunk", "unaligned", "meta"), REGISTRATIONS)
def test_registration_rules_agree_with_the_kernel(size: int, chunk: int, unaligned: bool, meta: int) -> None:
    """What ``XdpUmem`` refuses under the running kernel's rules, ``setsockopt(XDP_UMEM_REG)`` refuses, and only that.

    The rules are asked of the kernel as ``verify`` asks them (once per
    process); which lengths they allow is then the model's business, held here
    to the kernel at every length of ``TX_METADATA_LENS`` (0, 4, 8, 12, 16, 24,
    ... 256) on three geometries, and at every geometry edge.
    """
    need_afxdp()
    problem = registration_error(size, chunk, unaligned, meta, rules=running_kernel_rules())
    one = rules.descs((0, 64, 0))
    if problem is None:
        assert len(kernel_tx_verdicts(one, size, chunk, unaligned, meta)) == 1
    else:
        with pytest.raises(OSError) as refused:
            kernel_tx_verdicts(one, size, chunk, unaligned, meta)
        assert refused.value.errno == errno.EINVAL, (problem, refused.value)


#: UMEMs with a metadata area for the metadata tests, and a seed each.
META_UMEMS = [
    (["--umem-size", "0x200000", "--chunk-size", "4096", "--tx-metadata-len", "16"], 11),
    (["--umem-size", "0x200000", "--chunk-size", "2048", "--unaligned", "--tx-metadata-len", "24"], 12),
    (["--umem-size", "0x200000", "--chunk-size", "2048", "--tx-metadata-len", "32"], 13),
]
META_IDS = ["aligned-meta16", "unaligned-meta24", "aligned-meta32"]


def _flag(args: list[str], name: str) -> int:
    return int(args[args.index(name) + 1], 0)


def random_metadata_stream(args: list[str], seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` descriptors at valid places, most asking for their metadata, with random metadata.

    Flags: zero, known bits, known plus one unknown bit, or 64 random bits;
    half of them with XDP_TXMD_FLAGS_CHECKSUM and checksum fields drawn around
    the descriptor's length (csum_start + csum_offset + 2 equal to it, one
    more, or anything); some packets of several descriptors (only the first's
    metadata is read).
    """
    rng = np.random.default_rng(seed)
    size, chunk, meta_len = _flag(args, "--umem-size"), _flag(args, "--chunk-size"), _flag(args, "--tx-metadata-len")
    length = rng.integers(1, min(chunk - meta_len, 1500) + 1, n)
    slot = rng.integers(0, size // chunk, n) * chunk
    addr = slot + meta_len + rng.integers(0, chunk - meta_len - length + 1)
    options = np.where(rng.random(n) < 0.85, XDP_TX_METADATA, 0) | np.where(rng.random(n) < 0.15, XDP_PKT_CONTD, 0)
    options[-1] &= ~XDP_PKT_CONTD
    descs = np.zeros(n, XDP_DESC)
    descs["addr"], descs["len"], descs["options"] = addr, length, options
    meta = np.zeros(n, XSK_TX_METADATA)
    kind = rng.integers(0, 4, n)
    known = rng.integers(0, TXMD_KNOWN_FLAGS + 1, n).astype(np.uint64)
    unknown = np.uint64(1) << rng.integers(3, 64, n).astype(np.uint64)
    wild = rng.integers(0, 1 << 63, n).astype(np.uint64) << np.uint64(1) | rng.integers(0, 2, n).astype(np.uint64)
    meta["flags"] = np.select([kind == 0, kind == 1, kind == 2], [np.uint64(0), known, known | unknown], wild)
    checksum = rng.random(n) < 0.5
    meta["flags"] |= np.where(checksum, np.uint64(XDP_TXMD_FLAGS_CHECKSUM), np.uint64(0))
    edge = rng.random(n)
    reach = np.maximum(np.select([edge < 0.4, edge < 0.7], [length, length + 1], rng.integers(2, 5000, n)), 2)
    start = rng.integers(0, reach - 1)  # csum_start + csum_offset == reach - 2
    meta["csum_start"], meta["csum_offset"] = start, reach - 2 - start
    meta["launch_time"] = rng.integers(0, 1 << 63, n)
    return descs, meta


@pytest.mark.parametrize(("umem", "seed"), META_UMEMS, ids=META_IDS)
def test_random_metadata_agrees_with_the_kernel(
    umem: list[str], seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Metadata in the JSON Lines input: written into the real UMEM before each descriptor is sent."""
    descs, meta = random_metadata_stream(umem, seed, 1500)
    path = tmp_path / "meta.jsonl"
    path.write_text("".join(f"{line}\n" for line in write_descriptors(descs, [""] * len(descs), meta)))
    code, verdicts, summary = against_kernel([*umem, "--input", str(path)], capsys)
    assert summary["disagreements"] == [], json.dumps(summary["disagreements"][:20], indent=1)
    assert code == 0 and summary["agree"] == len(descs)
    reasons = {v["reason"] for v in verdicts}
    assert {None, "XDP_METADATA_FLAGS_UNKNOWN", "XDP_METADATA_CSUM_BEYOND_LEN"} <= reasons, reasons
    assert summary["accepted_by_both"] > 200 and summary["rejected_by_both"] > 200


@pytest.mark.parametrize(("umem", "seed"), META_UMEMS, ids=META_IDS)
def test_zero_metadata_agrees_with_the_kernel(
    umem: list[str], seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same kind of stream with all-zero metadata, spelt out: every descriptor is sent."""
    descs, _ = random_metadata_stream(umem, seed, 600)
    path = tmp_path / "zero.jsonl"
    lines = [json.dumps({**json.loads(line), "meta": {"flags": 0}}) for line in write_descriptors(descs, [""] * 600)]
    path.write_text("".join(f"{line}\n" for line in lines))
    code, verdicts, summary = against_kernel([*umem, "--input", str(path)], capsys)
    assert summary["disagreements"] == [], json.dumps(summary["disagreements"][:20], indent=1)
    assert code == 0 and all(v["accepted"] for v in verdicts)  # zero metadata asks for nothing


@pytest.mark.parametrize(("umem", "seed"), META_UMEMS, ids=META_IDS)
def test_metadata_from_a_umem_image_agrees_with_the_kernel(
    umem: list[str], seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--umem-image``: the image is the real UMEM's contents; the verifier reads each metadata area out of it."""
    descs, meta = random_metadata_stream(umem, seed + 100, 1500)
    size, meta_len = _flag(umem, "--umem-size"), _flag(umem, "--tx-metadata-len")
    image = np.zeros(size, np.uint8)
    start = descs["addr"].astype(np.int64)
    for i in np.flatnonzero(descs["options"] & XDP_TX_METADATA):  # later records win where areas overlap
        image[start[i] - meta_len : start[i] - meta_len + 12] = meta[i : i + 1].view(np.uint8)[:12]
    (tmp_path / "umem.bin").write_bytes(image.tobytes())
    path = tmp_path / "descs.jsonl"
    path.write_text("".join(f"{line}\n" for line in write_descriptors(descs, [""] * len(descs))))
    code, verdicts, summary = against_kernel(
        [*umem, "--input", str(path), "--umem-image", str(tmp_path / "umem.bin")], capsys
    )
    assert summary["disagreements"] == [], json.dumps(summary["disagreements"][:20], indent=1)
    assert code == 0
    assert {None, "XDP_METADATA_FLAGS_UNKNOWN", "XDP_METADATA_CSUM_BEYOND_LEN"} <= {v["reason"] for v in verdicts}

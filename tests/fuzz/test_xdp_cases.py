"""The AF_XDP case generator: deterministic by seed, every class, every xdp rule reached in both modes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fuzz.xdp_cases import CLASSES, generate
from ring.descriptors import XDP_DESC, XDP_TX_METADATA, XSK_TX_METADATA
from verifier.rules.xdp import XdpUmem, check_xdp_tx, reason_names

UMEMS = {
    "aligned": XdpUmem(1 << 22, 2048, page_size=4096),
    "aligned-meta": XdpUmem(1 << 22, 4096, tx_metadata_len=16, page_size=4096),
    "unaligned": XdpUmem(3000 * 1000, 3000, unaligned=True, page_size=4096),
    "unaligned-meta": XdpUmem(1 << 22, 2048, unaligned=True, tx_metadata_len=24, page_size=4096),
}


def test_same_seed_same_descriptors() -> None:
    umem = UMEMS["unaligned"]
    a, b = generate(umem, 700, 5), generate(umem, 700, 5)
    assert a.descs.dtype == XDP_DESC and a.descs.size == 700 and len(a.labels) == 700
    assert a.meta.dtype == XSK_TX_METADATA and a.meta.size == 700
    assert np.array_equal(a.descs, b.descs) and a.labels == b.labels and np.array_equal(a.meta, b.meta)
    assert not np.array_equal(a.descs, generate(umem, 700, 6).descs)


@pytest.mark.parametrize("name", list(UMEMS))
def test_every_class_appears(name: str) -> None:
    cases = generate(UMEMS[name], 600, 1)
    seen = {label.split("/")[0] for label in cases.labels}
    assert seen == set(CLASSES)


def test_the_cases_reach_every_xdp_rule() -> None:
    reached: Counter[str | None] = Counter()
    for umem in UMEMS.values():
        cases = generate(umem, 2000, 3)
        reached.update(reason_names(check_xdp_tx(cases.descs, umem, cases.meta)))
    expected = {
        None, "LEN_ZERO", "LEN_TOO_LONG", "PKT_TOO_MANY_FRAGS", "PKT_BAD_FRAGMENT", "XDP_ADDR_OUT_OF_UMEM",
        "XDP_CHUNK_CROSSED", "XDP_END_OUT_OF_UMEM", "XDP_OPTIONS_UNKNOWN", "XDP_METADATA_WITHOUT_LEN",
        "XDP_METADATA_FLAGS_UNKNOWN", "XDP_METADATA_CSUM_BEYOND_LEN", "XDP_METADATA_LAUNCH_TIME_OUTSIDE",
    }  # fmt: skip
    assert expected <= set(reached), expected - set(reached)
    assert reached[None] > 1000  # plenty of valid traffic around the edges


def test_random_metadata_rides_on_the_metadata_class_only() -> None:
    cases = generate(UMEMS["aligned-meta"], 3000, 4)
    carries = np.array([label.startswith("metadata-contents/") for label in cases.labels])
    nonzero = (cases.meta["flags"] != 0) | (cases.meta["csum_start"] != 0) | (cases.meta["csum_offset"] != 0)
    assert not nonzero[~carries].any()
    assert nonzero[carries].mean() > 0.3  # packets carry zero metadata on their other fragments
    assert (cases.meta["flags"][carries] >> 3 != 0).any()  # unknown bits
    read = carries & ((cases.descs["options"] & XDP_TX_METADATA) != 0)
    verdicts = reason_names(check_xdp_tx(cases.descs[read], UMEMS["aligned-meta"], cases.meta[read]))
    assert None in verdicts and "XDP_METADATA_CSUM_BEYOND_LEN" in verdicts


def test_a_subset_of_classes() -> None:
    cases = generate(UMEMS["aligned"], 50, 1, classes=["len-zero", "wrap"])
    assert {label.split("/")[0] for label in cases.labels} == {"len-zero", "wrap"}
    with pytest.raises(ValueError, match="unknown xdp case classes"):
        generate(UMEMS["aligned"], 5, 1, classes=["nope"])


def test_zero_descriptors() -> None:
    cases = generate(UMEMS["aligned"], 0, 1)
    assert cases.descs.size == 0 and cases.labels == []


@pytest.mark.parametrize(
    ("size", "chunk", "unaligned", "meta"),
    [(2048, 2048, False, 0), (4096, 4096, False, 248), (2049, 2049, True, 16), (5000, 2048, True, 0),
     (8192, 4096, False, 0), (3 * 4096 + 7, 3000, True, 248)],
)  # fmt: skip
def test_tiny_umems_get_cases_too(size: int, chunk: int, unaligned: bool, meta: int) -> None:
    """The smallest geometries the kernel registers: every class still finds numbers that fit its fields."""
    umem = XdpUmem(size, chunk, unaligned, meta, page_size=4096)
    for seed in range(3):
        cases = generate(umem, 3000, seed)
        assert {label.split("/")[0] for label in cases.labels} == set(CLASSES)

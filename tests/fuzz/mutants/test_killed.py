"""The fuzzer's teeth in ``make test``: a fixed set of mutants, each killed within a small deterministic budget.

One mutant per operator kind, TX and RX, the compiled fast path and the
compiled classification among them (fuzz/mutants, docs/fuzzing.md
"Measuring the fuzzer's teeth"); each runs on the machine that runs its code
through the real harness (a private copy, C recompiled, ``nic-sandbox fuzz``
as a subprocess) with ``--iterations 320`` (20 batches per class), so a
change that blunts the fuzzer fails here.  ``nic-sandbox mutants`` measures
the whole set.  A mutant that does not compile or import is "invalid", not
killed; a stop before anything finished leaves every mutant "not run".
"""

from __future__ import annotations

from pathlib import Path

from fuzz.mutants import outcome as O
from fuzz.mutants.generate import all_mutants
from fuzz.mutants.model import FLIP, Mutant
from fuzz.mutants.pool import run_all
from fuzz.mutants.run import Budget

ROOT = Path(__file__).resolve().parents[3]
ITERATIONS = 320
#: (mutant id, the slip) -- each must be killed by the fuzzer alone.
KILLED = (
    ("fastpath.tx_snapshot_check_post.drop-rejection.93c1aa", "C: the TX range check removed"),
    ("fastpath.rx_snapshot_check_post.drop-rejection.ac00c0", "C: the RX range check removed"),
    ("pins.PinTable.covers.drop-one.07fc0b", "a range of n frames needs only n - 1 pinned"),
    ("checks.check_tx.drop-condition.309071", "the numpy TX fast path forgets the pin rule"),
    ("checks.check_rx.drop-condition.cbb894", "the numpy RX fast path accepts any buffer"),
    ("checks.check_tx.cmp-boundary.5f7661", "a buffer of exactly max_buffer bytes refused"),
    ("policy.Policy.max_buffer.limit-off-by-one.d857ad", "the buffer limit one byte short"),
    ("pins.PinTable.release.semantic.unpin-ignores-dma", "unpin ignores in-flight DMA"),
    ("shadow.ShadowQueue.__post_init__.semantic.rx-checked-for-read", "C: RX checked for read access"),
    # the compiled classification of a refused batch (fastpath.c tx_classify/rx_classify), the default machine's
    ("fastpath.range_verdict.cmp-boundary.172c22", "C classification: a range's last frame never looked at"),
    ("fastpath.tx_packet.drop-condition.e9eeac", "C classification: a bad fragment's own reason overwritten"),
    # its checksum rule at the edges class csum-edge aims at (fuzz/csum_edges.py)
    ("fastpath.tx_packet.drop-condition.57f7d4", "C classification: checksum offsets judged on a packet still open"),
    ("fastpath.tx_packet.drop-condition.d77fd1", "C classification: CSUM_OFFSET before the descriptor's own reason"),
    ("fastpath.tx_packet.cmp-boundary.f8c307", "C classification: CSS on the packet's end accepted"),
    # the compiled doorbell's guards (shadow.py ShadowQueue.doorbell): ring-index's wide tails, race's windows
    ("shadow.ShadowQueue.doorbell.drop-condition.a843ab", "a tail no 32-bit register holds reaches cffi and raises"),
    ("shadow.ShadowQueue.doorbell.drop-condition.ae6e5c", "the compiled doorbell skips a before_read race window"),
    ("shadow.ShadowQueue.doorbell.cmp-boundary.d30bf2", "an after_check window on a doorbell that brings nothing"),
)


def broken(file: str, old: str, new: str) -> Mutant:
    text = (ROOT / file).read_text()
    return Mutant(file, "test", FLIP, text.index(old), old, new, 1)


def test_the_reduced_set_is_killed_by_the_fuzzer_and_broken_mutants_are_invalid() -> None:
    by_id = {m.id: m for m in all_mutants(ROOT)}
    mutants = [by_id[mid] for mid, _ in KILLED]
    c_broken = broken("verifier/rules/fastpath.c", "uint64_t last_byte = addr + span;", "uint64_t last_byte = ;")
    py_broken = broken("verifier/pins.py", "def covers(", "def covers[(")
    outcomes, stopped = run_all(ROOT, [*mutants, c_broken, py_broken], {}, Budget(None, ITERATIONS, 1, ()), jobs=2)
    assert not stopped
    verdicts = {o.mutant.id: o for o in outcomes}
    missed = [
        f"{mid} ({why}): {verdicts[mid].verdict} {verdicts[mid].detail}"
        for mid, why in KILLED
        if verdicts[mid].verdict != O.KILLED_FUZZ
    ]
    assert not missed, "the fuzzer lost its teeth for: " + "; ".join(missed)
    assert all(verdicts[mid].killer and verdicts[mid].first_seconds is not None for mid, _ in KILLED)
    assert verdicts[c_broken.id].verdict == O.INVALID and "does not compile" in verdicts[c_broken.id].detail
    assert verdicts[py_broken.id].verdict == O.INVALID and "does not load" in verdicts[py_broken.id].detail


def test_a_stop_leaves_the_rest_not_run() -> None:
    mutants = [m for m in all_mutants(ROOT) if m.file.endswith("checks.py")][:4]
    outcomes, stopped = run_all(ROOT, mutants, {}, Budget(30.0, None, 1, ()), jobs=2, stop=lambda: True)
    assert stopped
    assert [o.verdict for o in outcomes] == [O.NOT_RUN] * 4

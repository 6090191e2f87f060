"""The work-request generator: deterministic by seed, every class, companions that fill exactly."""

from __future__ import annotations

import itertools

from fuzz.verbs_cases import CLASSES, MR_SPECS, generate
from ring.verbs_format import IBV_WR_SEND
from tests.verbs_layout import example_layout


def test_same_seed_same_cases_other_seed_other_cases() -> None:
    layout = example_layout()
    a, b, c = generate(layout, 3), generate(layout, 3), generate(layout, 4)
    key = [(x.name, x.batch.wrs.tobytes(), x.batch.sges.tobytes()) for x in a]
    assert key == [(x.name, x.batch.wrs.tobytes(), x.batch.sges.tobytes()) for x in b]
    assert key != [(x.name, x.batch.wrs.tobytes(), x.batch.sges.tobytes()) for x in c]


def test_every_class_and_unique_wr_ids() -> None:
    cases = generate(example_layout(), 1, per_class=3)
    assert len(cases) == 3 * len(CLASSES)
    assert len({c.name for c in cases}) == len(cases)
    ids = [int(c.batch.wrs["wr_id"][0]) for c in cases]
    assert sorted(ids) == list(range(1, len(cases) + 1))
    assert {c.valid for c in cases} == {True, False}
    assert all(len(c.batch) == 1 for c in cases)


def test_companions_exercise_every_byte() -> None:
    for case in generate(example_layout(), 2, per_class=4):
        if case.queue == "recv":
            assert case.companion is not None and case.companion.is_send
            assert int(case.companion.wrs["opcode"][0]) == IBV_WR_SEND
            assert case.companion.message_length().tolist() == [case.message_length]
        elif case.opcode == IBV_WR_SEND:
            assert case.companion is not None and not case.companion.is_send
            assert case.companion.message_length().tolist() == [case.message_length]
        else:
            assert case.companion is None


def test_too_many_sge_follows_the_queue_pair() -> None:
    cases = generate(example_layout(max_send_sge=6, max_recv_sge=2), 5, per_class=1)
    many = {c.queue: int(c.batch.wrs["num_sge"][0]) for c in cases if c.klass == "too-many-sge"}
    assert many == {"send": 7, "recv": 3}


def test_layout_leaves_unregistered_gaps() -> None:
    mine = sorted((s.offset, s.offset + s.length) for s in MR_SPECS if s.owner == "tenant")
    assert all(end < nxt for (_, end), (nxt, _) in itertools.pairwise(mine))
    assert mine[0][0] > 0

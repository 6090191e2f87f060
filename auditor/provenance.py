"""The chain's verdict that travels with an export: what was verified, up to which head, against which anchor.

An export is a copy an auditor hands on (to a data lake, a SIEM); once the
records are out of the JSON Lines file, the hash chain no longer protects
them.  So an export is made only from a log that verifies
(``verifier.audit.read.verify``, with ``audit seal``'s anchor when given),
and it carries the head it was made from -- seq and hash of the newest
record, and the anchor -- so the copy can be checked against the log or the
anchor later.  ``--force`` exports a log that does not verify, and says so in
the same place (``verified: false`` and the problems).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from verifier.audit.read import Anchor, verify

#: Problems kept in an export's provenance (the verdict of ``audit verify`` has them all).
PROBLEMS_KEPT = 20


@dataclass(frozen=True)
class Provenance:
    """The verdict of the log an export is made of."""

    verified: bool
    first_seq: int
    head_seq: int
    head: str
    records: int
    files: tuple[str, ...]
    anchor: Anchor | None
    problems: tuple[str, ...]
    more_problems: int

    def as_dict(self) -> dict[str, object]:
        return {
            "schema": "nic-sandbox audit v1",
            "verified": self.verified,
            "first_seq": self.first_seq,
            "head_seq": self.head_seq,
            "head": self.head,
            "records": self.records,
            "files": list(self.files),
            "anchor": None if self.anchor is None else {"seq": self.anchor.seq, "hash": self.anchor.hash},
            "problems": list(self.problems[:PROBLEMS_KEPT]),
            "more_problems": self.more_problems + max(0, len(self.problems) - PROBLEMS_KEPT),
        }

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))


def chain_verdict(files: list[Path], anchor: Anchor | None, anchor_problems: list[str]) -> Provenance:
    """Verify ``files`` (with ``anchor``); ``anchor_problems``: a wrong or missing MAC found reading the anchor."""
    result = verify(files, anchor=anchor)
    problems = tuple(anchor_problems) + tuple(f"{p.text} at seq {p.seq}" for p in result.problems)
    return Provenance(
        verified=not problems,
        first_seq=result.first_seq,
        head_seq=result.head_seq,  # the seq of ``head``: past the first problem when the log does not verify
        head=result.head,
        records=result.records,
        files=result.files,
        anchor=anchor,
        problems=problems,
        more_problems=result.more_problems,
    )

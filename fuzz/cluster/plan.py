"""What every Ray worker of a campaign is told: the campaign's parameters, shipped once per actor.

Everything here is plain data (picklable) except ``audit_factory``, a
module-level function or ``functools.partial`` that opens the worker's own
audit sink from a tag (``job0``, ``job0-retry1``): the command line passes
one that writes ``PATH.<tag>`` (fuzz cannot import the command line).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fuzz.campaign import ARENA_EVERY, DEFAULT_BATCH
from fuzz.steps import Attack
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection


@dataclass
class Plan:
    protection: Protection
    seed: int
    classes: list[str]
    #: worker actors (blocks ``j, j+workers, ...`` each); 0: one per CPU of the cluster
    workers: int
    iterations: int | None = None
    seconds: float | None = None
    batch: int = DEFAULT_BATCH
    arena_every: int = ARENA_EVERY
    coverage: bool = False
    #: (class, batch) pairs every worker starts from (``--corpus DIR``)
    corpus: list[tuple[str, Attack]] = field(default_factory=list)
    #: minimise each new distinct finding on the worker that found it (off when the user asked to stop)
    minimise: bool = True
    audit_factory: Callable[[str], AuditSink] | None = None
    #: each worker ends after the batch of its first finding (``fuzz --until-first``)
    until_first: bool = False

    @property
    def share(self) -> bool:
        """Whether workers feed each other's mutation pools.

        Only with coverage feedback: a campaign without it never mutates (fuzz/campaign.py), which is what
        makes its findings those of ``--jobs`` for the same seed and iterations; sharing would change them.
        """
        return self.coverage

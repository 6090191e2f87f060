"""Attack steps: one frozen, typed dataclass per operation, each runs, serialises, validates and describes itself.

``base`` (the ``Step`` base and the campaign's ``Attack``), ``spec`` (the
declarative JSON field specs and ``ReproducerError``), one module per family
(``tx``, ``rx``, ``registers``, ``lifetime``, ``syscalls``), ``mutation`` (the mutation
component), ``registry`` (op name -> step type: the one dispatch).
"""

from fuzz.steps.base import Attack, Step
from fuzz.steps.lifetime import SPANS, Free, Pin, Unpin, VictimAlloc
from fuzz.steps.registers import Reg
from fuzz.steps.registry import STEPS, step_from_json
from fuzz.steps.rx import QUEUES, Doorbell, EveSends, Rx, post_and_receive
from fuzz.steps.spec import ReproducerError
from fuzz.steps.syscalls import OpenQueue, PinRange, RegAt, UnpinRange
from fuzz.steps.tx import AFTER_CHECK, BEFORE_READ, POINTS, REWRITE_KEYS, THREADED, FakeRing, Rewrite, Tx, tx_batch
from fuzz.steps.virtq import VirtqPost

__all__ = [
    "AFTER_CHECK",
    "BEFORE_READ",
    "POINTS",
    "QUEUES",
    "REWRITE_KEYS",
    "SPANS",
    "STEPS",
    "THREADED",
    "Attack",
    "Doorbell",
    "EveSends",
    "FakeRing",
    "Free",
    "OpenQueue",
    "Pin",
    "PinRange",
    "Reg",
    "RegAt",
    "ReproducerError",
    "Rewrite",
    "Rx",
    "Step",
    "Tx",
    "Unpin",
    "UnpinRange",
    "VictimAlloc",
    "VirtqPost",
    "post_and_receive",
    "step_from_json",
    "tx_batch",
]

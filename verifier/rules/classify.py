"""The compiled classification of a refused batch: ``check_tx``'s and ``check_rx``'s verdicts from one C call.

Why: the compiled doorbell (fastpath.c) decides a clean batch in one call,
but a batch with anything to refuse -- the fuzzer's normal state -- went to
the numpy rules of checks.py for every descriptor's reason, first bad byte
and owner: some sixty array calls (about 0.3 ms for 255 descriptors), most
of it call overhead.  ``tx_classify`` and ``rx_classify`` (fastpath.c) walk
the batch once and write the same ``Verdicts``.

They are an accelerator, not a second rule book: checks.py stays the
semantics, ``NIC_SANDBOX_FASTPATH=0`` runs it alone, and
tests/verifier/test_classify.py holds the two to identical verdicts over
every fuzz class's batches and random descriptors; the C functions are
mutation targets of their own (fuzz/mutants/targets.py).  A queue whose
memory or policy the C cannot represent exactly (memory not a whole number
of frames, a limit beyond 64 bits, an RX buffer of zero bytes) is judged by
checks.py.

On wherever the compiled path is (the default): a test or a mutant that
weakens checks.py must run where checks.py judges, the numpy machine
(``NIC_SANDBOX_FASTPATH=0``, or the fuzzer's numpy rounds); ``make mutants``
judges each mutant on the machine that runs its code
(fuzz/mutants/targets.py, docs/fuzzing.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ring.descriptors import DESC_SIZE
from ring.memory import PAGE_SHIFT
from verifier.pins import PinTable
from verifier.rules.checks import Verdicts
from verifier.rules.fastpath import FastPath
from verifier.rules.policy import Policy

_I64 = range(-(2**63), 2**63)


class Classifier:
    """One queue's compiled classification: its pin table and the memory's owners as the C reads them.

    The pointers are taken once: the pin table's arrays and the owners are updated (and reset, world/reset.py) in
    place, as the compiled doorbell's ``frame_ok`` is.  The C structs live in numpy arrays this object owns, so a
    machine reset treats them like any state; the pin struct holds only those pointers, which differ between two
    machines built alike, so a reset leaves it alone (``RESET_SCRATCH``, as ``ShadowQueue.quick_rings``).
    """

    RESET_SCRATCH: ClassVar[tuple[str, ...]] = ("_pin_bytes",)

    def __init__(self, fast: FastPath, pins: PinTable, owners: npt.NDArray[np.int32], memory_size: int) -> None:
        self.fast = fast
        ffi = fast.ffi
        arrays = (pins.access, pins.released, owners)
        #: whether the C can judge this queue exactly (else checks.py does)
        self.exact = (
            memory_size == pins.frames << PAGE_SHIFT
            and all(a.size == pins.frames and a.flags.c_contiguous for a in arrays)
            and owners.dtype == np.int32
            and pins.access.dtype == np.uint8
            and pins.released.dtype == np.bool_
            and pins.tenant in _I64
        )
        self._arrays = arrays  # alive as long as the pointers
        self._pin_bytes = np.zeros(ffi.sizeof("struct fp_pins"), dtype=np.uint8)
        self.pins = ffi.cast("struct fp_pins *", self._pin_bytes.ctypes.data)
        if self.exact:
            p = self.pins
            p.access, p.released = fast.ptr(pins.access), fast.ptr(pins.released)
            p.owners = ffi.cast("int32_t *", owners.ctypes.data)
            p.memory_size, p.tenant = memory_size, pins.tenant
        self._policy: Policy | None = None
        self._rules: Any = None
        self._rule_bytes: npt.NDArray[np.uint8] | None = None

    def _tx_rules(self, policy: Policy) -> Any:
        """The ``struct fp_tx_rules`` of ``policy`` (made once per policy), or None when the C cannot hold it."""
        if policy is not self._policy:
            self._policy = policy
            self._rules = None
            limits = (policy.max_buffer, policy.max_frame, policy.max_fragments)
            if all(x in _I64 for x in limits):
                ffi = self.fast.ffi
                self._rule_bytes = np.zeros(ffi.sizeof("struct fp_tx_rules"), dtype=np.uint8)
                r = self._rules = ffi.cast("struct fp_tx_rules *", self._rule_bytes.ctypes.data)
                r.max_buffer, r.max_frame, r.max_fragments = limits
                r.cmd_refused = ~policy.tx_cmd_allowed & 0xFF
                fast = policy.tx_fast_path
                if fast is not None:
                    r.fast, r.cmd_mask, r.cmd_expect = 1, int(fast[0]), int(fast[1])
        return self._rules

    def _out(self, n: int) -> tuple[Verdicts, Any, Any, Any, Any]:
        """Fresh verdict arrays for ``n`` descriptors (one allocation) and their C pointers.

        ``ffi.from_buffer`` gives a typed pointer in one call; ``ffi.cast`` of ``.ctypes.data`` builds a ctypes
        object first and cost about ten times as much (four of them a batch were some 2% of a campaign's CPU)."""
        buf = np.empty(n * 14, dtype=np.uint8)  # bad_byte (8 n), owner (4 n), reason (n), held (n): aligned in turn
        bad_byte, owner, reason, held = buf[: n * 8], buf[n * 8 : n * 12], buf[n * 12 : n * 13], buf[n * 13 :]
        v = Verdicts(reason, bad_byte.view(np.int64), owner.view(np.int32), held.view(np.bool_))
        at = self.fast.ffi.from_buffer
        return v, at("uint8_t[]", reason), at("int64_t[]", bad_byte), at("int32_t[]", owner), at("uint8_t[]", held)

    def takes_tx(self, policy: Policy) -> bool:
        """Whether ``check_tx`` below may judge this queue's TX batches under ``policy`` (else checks.py's does)."""
        return self.exact and self._tx_rules(policy) is not None

    def takes_rx(self, policy: Policy) -> bool:
        """Whether ``check_rx`` below may judge this queue's RX batches under ``policy``."""
        return self.exact and 0 < policy.rx_buffer_size < 2**63

    def check_tx(self, descs: npt.NDArray[np.void], policy: Policy) -> Verdicts | None:
        """``check_tx(descs, pins, owners, memory_size, policy)`` of checks.py (``takes_tx(policy)`` must hold)."""
        rules = self._tx_rules(policy)
        n = descs.size
        if n == 0:
            return None
        descs = np.ascontiguousarray(descs)
        v, reason, bad_byte, owner, held = self._out(n)
        lib, ffi = self.fast.lib, self.fast.ffi
        judged = lib.tx_classify(
            self.pins, rules, ffi.from_buffer("uint8_t[]", descs), n, reason, bad_byte, owner, held
        )
        return v if judged else None

    def check_rx(self, descs: npt.NDArray[np.void], policy: Policy) -> Verdicts | None:
        """``check_rx(descs["addr"], pins, owners, memory_size, policy)`` of checks.py (``takes_rx(policy)``)."""
        size = policy.rx_buffer_size
        n = descs.size
        if n == 0:
            return None
        descs = np.ascontiguousarray(descs)
        assert descs.dtype.itemsize == DESC_SIZE
        v, reason, bad_byte, owner, _ = self._out(n)
        v.held[:] = False
        lib, ffi = self.fast.lib, self.fast.ffi
        judged = lib.rx_classify(self.pins, size, ffi.from_buffer("uint8_t[]", descs), n, reason, bad_byte, owner)
        return v if judged else None

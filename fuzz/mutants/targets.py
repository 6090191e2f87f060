"""What is mutated: the functions of verifier/ that enforce the rules of verifier/rules/reasons.py.

Picked by reading the code, rule by rule.  Left out on purpose: audit
writing (verifier/audit/), formatting (``owner_label``), logging, the
doorbell window (verifier/doorbell.py only forwards a register access to
``Kernel.register_write``, it decides nothing), the bring-up sequence of
nic_control.py (no rule), address translation (``virt_to_phys``: a slip
there is garbage, not a weakened rule), the fuzzer's hook points of
``QueueState.judge_new`` (its rule is ``judge_tail``), and the ring copies of fastpath.c
(``copy_in``/``copy_out``/the completion write-backs move bytes, they judge
nothing).  A function listed here that no longer exists is an error
(generate.py), so the list cannot silently go stale.
"""

from __future__ import annotations

#: Python files and the functions (qualified names) whose rules are mutated.
PYTHON: dict[str, tuple[str, ...]] = {
    "verifier/rules/checks.py": ("frame_span", "check_ranges", "pinned_mask", "_classify", "check_tx", "check_rx"),
    "verifier/rules/policy.py": ("Policy.tx_fast_path",),
    "verifier/pins.py": (
        "PinTable._rebuild",
        "PinTable.covers",
        "PinTable.add",
        "PinTable.release",
        "PinTable.references",
        "PinTable._finish",
        "PinTable.settle",
    ),
    "verifier/queue_state.py": ("judge_tail", "QueueState.mark_done", "QueueState.done_run"),
    "verifier/address_space.py": ("AddressSpace.mmap", "AddressSpace.owns_phys"),
    "verifier/nic_control.py": ("program_ring",),
    "verifier/modes/shadow.py": (
        "frame_runs",
        "ShadowQueue.__post_init__",
        "ShadowQueue.completed",
        "ShadowQueue.in_flight",
        "ShadowQueue.doorbell",
        "ShadowQueue._doorbell_slow",
        "TxShadow._compiled",
        "TxShadow._judge",
        "TxShadow._expire_held",
        "RxShadow._compiled",
        "RxShadow._judge",
    ),
}

#: The limits (class name, field): each default one more and one less (policy.py: the kernel's tunables).
LIMITS: dict[str, tuple[tuple[str, str], ...]] = {
    "verifier/rules/policy.py": (
        ("Policy", "max_buffer"),
        ("Policy", "max_frame"),
        ("Policy", "max_fragments"),
        ("Policy", "rx_buffer_size"),
        ("Policy", "max_held_doorbells"),
    ),
}

#: The compiled fast path and its functions that judge descriptors (the clean-batch check and the classification).
C: dict[str, tuple[str, ...]] = {
    "verifier/rules/fastpath.c": (
        "range_ok",
        "tx_snapshot_check_post",
        "rx_snapshot_check_post",
        # the full classification of a refused batch (verifier/rules/classify.py): it gives the verdicts the
        # kernel acts on and audits, so its slips are slips of the rules
        "range_verdict",
        "tx_packet",
        "tx_classify",
        "rx_classify",
    ),
}

#: Every file the mutants touch (the workspace recompiles the fast path when a .c file is mutated).
FILES = (*PYTHON, *C)

#: The Python rules only the kernel without its compiled path runs: with the accelerators on, the compiled doorbell
#: (fastpath.c) judges a clean batch and the compiled classification (verifier/rules/classify.py) a refused one, each
#: implementing these rules whole, so checks.py (and ``PinTable.covers``, which only checks.py asks) judge a batch
#: only on the numpy machine.  A mutant of them is fuzzed there, ``NIC_SANDBOX_FASTPATH=0`` (the user's switch, the
#: reference); every other mutant -- the C, and the Python both machines run -- with the accelerators on.
REFERENCE: dict[str, tuple[str, ...]] = {
    "verifier/rules/checks.py": PYTHON["verifier/rules/checks.py"],
    "verifier/pins.py": ("PinTable.covers",),
}


def accelerated(file: str, function: str) -> bool:
    """Whether a mutant of ``function`` in ``file`` is fuzzed with the compiled accelerators on (see ``REFERENCE``)."""
    return function not in REFERENCE.get(file, ())

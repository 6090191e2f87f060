"""Mutation testing of the verifier: does the fuzzer notice when someone breaks a security rule, and how fast?

A *mutant* is a copy of the source tree with one small, plausible slip in
one security rule of verifier/ (Python or the compiled fast path,
verifier/rules/fastpath.c): a comparison boundary flipped, a ``+ 1`` lost, a
condition dropped from a chain of rejections, a limit off by one, a
rejection removed, or one of the hand-written *semantic* slips of
catalog.toml (a check on a buffer's first and last page only, an unpin that
forgets in-flight DMA, ...).  The runner (run.py, pool.py) fuzzes each
mutant in verifier mode with a fixed budget; a mutant the fuzzer finds is
*killed*, one it does not is a blind spot.  ``nic-sandbox mutants`` prints
the table and the two figures issue 13 asks for.

Why our own operators and not mutmut or cosmic-ray: both mutate Python
only, so the C fast path -- the code that judges every clean batch --
would never be mutated; both take a test suite as the killer, and here the
killer is a fuzzing campaign run as a subprocess with a time budget, whose
verdict is the oracle's findings and which needs the C recompiled in the
mutant's copy; and both mutate every operator of every function, while the
question here is narrower: the slips a kernel developer makes in the
functions that enforce the rules of verifier/rules/reasons.py, nothing in
audit writing, formatting or logging (targets.py names them).  The
operators work on source *text* (Python located with ``ast``, C with a
small scanner of the named functions), never by importing the code they
mutate, so a mutant that does not import or compile is just "invalid".

Files, one job each: model.py (a mutant and its stable id), targets.py (what
is mutated), python_ops.py and c_ops.py (the operators), catalog.py and
catalog.toml (the semantic mutants), equivalent.py and equivalent.toml
(mutants argued to be equivalent), generate.py (all mutants), workspace.py
(a private mutated copy, compiled), run.py (one mutant: fuzzer, then tests),
pool.py (many at a time, interruptible), report.py (verdicts and totals).
"""

"""Many mutants, ``jobs`` at a time, each in its own scratch copy; a stop keeps what is done.

Two phases: first every mutant is fuzzed (so the fuzzer-alone figure is
complete early), then the fuzzer's survivors meet the tests, once the tests
have passed on the unmutated copy (a copy that lacks a file a test reads
would otherwise "kill" every mutant).  Equivalent
mutants (equivalent.toml) are not run.  ``stop`` is asked every half
second: once true, the running subprocesses are killed (only those this
pool started, each in its own session); a mutant not fuzzed yet is "not
run", a survivor whose tests did not run keeps its fuzzer verdict with a
note.  ``progress`` gets each outcome as it comes, for a progress line.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from fuzz.mutants import outcome as O
from fuzz.mutants.model import Mutant
from fuzz.mutants.run import Budget, Children, Interrupted, fuzz_one, run_tests
from fuzz.mutants.workspace import WorkspaceError, make_base

T = TypeVar("T")
Progress = Callable[[str, O.Outcome], None]  # (phase: "fuzz" or "tests", outcome)


def run_all(
    root: Path,
    mutants: list[Mutant],
    equivalent: dict[str, str],
    budget: Budget,
    jobs: int = 2,
    stop: Callable[[], bool] | None = None,
    progress: Progress | None = None,
) -> tuple[list[O.Outcome], bool]:
    """Outcomes in the order of ``mutants``, and whether the run was stopped early."""
    outcomes: dict[str, O.Outcome] = {
        m.id: O.Outcome(m, O.EQUIVALENT, detail=equivalent[m.id]) for m in mutants if m.id in equivalent
    }
    children = Children()
    lock = threading.Lock()

    def report(phase: str, result: O.Outcome) -> None:
        with lock:
            outcomes[result.mutant.id] = result
            if progress is not None:
                progress(phase, result)

    with tempfile.TemporaryDirectory(prefix="nic-mutants-") as tmp:
        scratch = Path(tmp)
        base = make_base(root, scratch / "base")

        def fuzz(m: Mutant) -> None:
            if children.stopped:
                return
            try:
                result = fuzz_one(m, base, scratch, budget, children)
            except Interrupted:
                shutil.rmtree(scratch / m.id, ignore_errors=True)
                return
            if result.verdict != O.SURVIVED or not budget.tests:
                shutil.rmtree(scratch / m.id, ignore_errors=True)
            report("fuzz", result)

        def test(result: O.Outcome) -> None:
            if children.stopped:
                return
            try:
                report("tests", run_tests(result, scratch / result.mutant.id, budget.tests, children))
            except Interrupted:
                result.detail = "tests not run: interrupted"
            finally:
                shutil.rmtree(scratch / result.mutant.id, ignore_errors=True)

        _parallel(fuzz, [m for m in mutants if m.id not in outcomes], jobs, children, stop)
        survivors = [o for o in list(outcomes.values()) if o.verdict == O.SURVIVED]
        if budget.tests and survivors and not children.stopped:
            _tests_pass_unmutated(base, budget.tests, children)
            _parallel(test, survivors, jobs, children, stop)
    return [outcomes.get(m.id, O.Outcome(m, O.NOT_RUN)) for m in mutants], children.stopped


def _tests_pass_unmutated(base: Path, tests: tuple[str, ...], children: Children) -> None:
    """The tests must pass on the unmutated copy, or a failure would say nothing about a mutant."""
    try:
        code, out, _ = children.run(["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], base, 1800)
    except Interrupted:
        return
    if code not in (0, 5):
        failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
        raise WorkspaceError(f"the tests fail on the unmutated copy: {failed[0] if failed else f'exit {code}'}")


def _parallel(
    work: Callable[[T], None], items: list[T], jobs: int, children: Children, stop: Callable[[], bool] | None
) -> None:
    """Run ``work`` over ``items``, ``jobs`` at a time, stopping the children once ``stop()`` is true."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: set[Future[None]] = {pool.submit(work, item) for item in items}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
            if stop is not None and stop() and not children.stopped:
                children.stop()

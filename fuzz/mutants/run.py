"""One mutant: fuzz it (verifier mode, a fixed budget, a subprocess), and if it survives, run the tests.

The campaign is the real command, ``python -m sandbox fuzz --protection
verifier --seed S --json`` with ``--seconds`` or ``--iterations``, run in the
mutant's copy; its JSON report says what was found and, per finding, when
(``seconds`` since the campaign started).  Any finding, or an end-of-campaign
audit problem, kills the mutant; so does a campaign that crashes or hangs
(it judged the mutated kernel and could not finish: a liveness finding).
A fuzzer survivor then meets the tests (``pytest -x -q TESTS`` in the copy,
pool.py runs them once every mutant was fuzzed): a failure kills it "by
tests".

Each mutant is fuzzed on the machine that runs its code (targets.py
``accelerated``): a mutant of the numpy rules that the compiled path
replaces whole (checks.py, ``PinTable.covers``) with the accelerators off,
``NIC_SANDBOX_FASTPATH=0``; the C, and the Python both machines run, with
them on (a campaign under ``verifier`` then still plays every other round on
the numpy machine).  The tests pick their machines themselves and run as
they do in ``make test``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz.mutants import outcome as O
from fuzz.mutants.model import Mutant
from fuzz.mutants.targets import accelerated
from fuzz.mutants.workspace import environment, prepare

DEFAULT_TESTS = ("tests/verifier",)


@dataclass(frozen=True)
class Budget:
    seconds: float | None = 30.0
    iterations: int | None = None
    seed: int = 1
    tests: tuple[str, ...] = DEFAULT_TESTS  # empty: fuzzer only

    def fuzz_args(self) -> list[str]:
        limit = ["--iterations", str(self.iterations)] if self.iterations else ["--seconds", f"{self.seconds:g}"]
        fuzz = ["-m", "sandbox", "fuzz", "--protection", "verifier", "--seed", str(self.seed), "--until-first"]
        return [*fuzz, "--json", *limit]

    @property
    def fuzz_timeout(self) -> float:
        return 600.0 if self.iterations else 3 * (self.seconds or 30.0) + 120.0


class Children:
    """The subprocesses running now, each in its own session, so that a stop ends exactly them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self.stopped = False

    def run(
        self, args: list[str], work: Path, timeout: float, accelerators: bool = True
    ) -> tuple[int | None, str, str]:
        """(exit code or None on timeout, stdout, stderr); ``accelerators`` False: ``NIC_SANDBOX_FASTPATH=0``."""
        with self._lock:
            if self.stopped:
                raise Interrupted
            proc = subprocess.Popen(
                [sys.executable, *args], cwd=work, env=environment(work, accelerators), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, start_new_session=True,
            )  # fmt: skip
            self._running.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, err = proc.communicate()
            code = None
        finally:
            with self._lock:
                self._running.discard(proc)
        if self.stopped:
            raise Interrupted
        return code, out, err

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for proc in self._running:
                _kill(proc)


class Interrupted(Exception):
    """The run was asked to stop while this mutant ran."""


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the campaign and anything it started


def fuzz_one(mutant: Mutant, base: Path, scratch: Path, budget: Budget, children: Children) -> O.Outcome:
    """Prepare the mutant's copy under ``scratch`` and fuzz it (the copy stays for the tests: ``run_tests``)."""
    work = scratch / mutant.id
    prepared = prepare(base, mutant, work)
    if prepared.invalid:
        return O.Outcome(mutant, O.INVALID, detail=prepared.invalid)
    out_dir = work / "fuzz-out"  # report, reproducers and the audit log: ~100 MB per campaign, read from stdout
    on = accelerated(mutant.file, mutant.function)  # the machine that runs the mutated code
    try:
        code, out, err = children.run([*budget.fuzz_args(), "--out", str(out_dir)], work, budget.fuzz_timeout, on)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if code is None:
        return O.Outcome(mutant, O.KILLED_FUZZ, "(campaign hung)", detail=f"no end within {budget.fuzz_timeout:g} s")
    report = _parse(out)
    if report is None:
        return O.Outcome(mutant, O.KILLED_FUZZ, "(campaign crashed)", detail=_last(err))
    return judge_report(mutant, report)


def _parse(out: str) -> dict[str, Any] | None:
    try:
        report = json.loads(out)
    except ValueError:
        return None
    return report if isinstance(report, dict) and "findings" in report else None


def judge_report(mutant: Mutant, report: dict[str, Any]) -> O.Outcome:
    """The verdict of a campaign's JSON report: the earliest finding kills, else an audit problem, else survived."""
    seconds = float(report.get("seconds", 0.0))
    iterations = int(report.get("iterations", 0))
    findings = report.get("findings") or []
    if findings:
        first = min(findings, key=lambda f: float(f.get("seconds", seconds)))
        return O.Outcome(
            mutant, O.KILLED_FUZZ, f"{first['class']}/{first['kind']}", float(first.get("seconds", seconds)),
            str(first.get("what", "")), seconds, iterations,
        )  # fmt: skip
    problems = report.get("audit_problems") or []
    if problems:
        return O.Outcome(mutant, O.KILLED_FUZZ, "(audit end check)", seconds, str(problems[0]), seconds, iterations)
    return O.Outcome(mutant, O.SURVIVED, fuzz_seconds=seconds, iterations=iterations)


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def run_tests(result: O.Outcome, work: Path, tests: tuple[str, ...], children: Children) -> O.Outcome:
    """A fuzzer survivor against the tests, in its copy: a failure (or an error) kills it "by tests"."""
    code, out, err = children.run(["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], work, 1800)
    if code in (0, 5):  # 5: no test collected
        return result
    failed = _FAILED.search(out)
    result.verdict = O.KILLED_TESTS
    result.killer = failed.group(1) if failed else "(pytest hung)" if code is None else f"(pytest exit {code})"
    result.detail = _last(out + err)
    return result


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"

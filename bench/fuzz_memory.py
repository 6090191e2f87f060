"""The fuzzer's budgets, measured: resident memory of a campaign, and how far ``--seconds N`` overruns N.

Memory (issue 11: at most 300 MB for any campaign length, each ``--jobs``
worker within it): ``nic-sandbox fuzz --no-audit-log --seconds S`` runs in
a child process; its peak resident set (``ru_maxrss`` of the waited-for
children: the process and its workers, the largest of them) is the figure.
Before fuzz/budget.py freed retired arenas at once, a 30 s campaign reached
860-880 MB.

Time: ``nic-sandbox fuzz --seconds N`` with its default file-backed audit log,
whose end check (verifying the log) is part of the budget; the figure is the
wall time of the whole command, start-up and report included, minus N.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

BUDGET_MB = 300


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    seconds: float  # wall time of the whole command
    max_rss_mb: float  # the largest resident set of the command or any of its workers
    exit_code: int


def run(*args: str) -> Run:
    """``nic-sandbox fuzz ARGS`` in a fresh process (``--out`` a temporary directory); its wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="nicsb-bench-") as out:
        argv = (sys.executable, "-m", "sandbox", "fuzz", *args, "--out", out, "--json")
        start = time.perf_counter()
        # run via a fresh interpreter whose only children are this command's: RUSAGE_CHILDREN is its own
        probe = (
            "import resource, subprocess, sys; "
            "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
        )
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    rss_kb = (
        int(done.stdout.strip().splitlines()[-1])
        if done.stdout.strip()
        else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    return Run(("fuzz", *args), wall, rss_kb / 1024, done.returncode)


def memory(seconds: float = 30.0, jobs: int = 1) -> Run:
    """Peak RSS of a ``--no-audit-log`` campaign of ``seconds`` (with ``jobs`` workers)."""
    extra = ("--jobs", str(jobs)) if jobs > 1 else ()
    return run("--no-audit-log", "--seconds", f"{seconds:g}", *extra)


def overrun(seconds: float = 5.0) -> float:
    """Wall time of ``fuzz --seconds N`` (default audit log) minus N."""
    return run("--seconds", f"{seconds:g}").seconds - seconds


def main() -> None:  # python -m bench.fuzz_memory
    for jobs in (1, 2):
        r = memory(30.0, jobs)
        verdict = "within" if r.max_rss_mb <= BUDGET_MB else "above"
        print(
            f"fuzz --no-audit-log --seconds 30 --jobs {jobs}: max RSS {r.max_rss_mb:.0f} MB, {verdict} {BUDGET_MB} MB"
        )
    print(f"fuzz --seconds 5: {overrun(5.0):+.1f} s beyond the budget")


if __name__ == "__main__":
    main()

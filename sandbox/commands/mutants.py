"""``nic-sandbox mutants``: mutation testing of the verifier, to measure whether the fuzzer has teeth.

Each mutant (fuzz/mutants/) is one plausible slip in one security rule of
verifier/, the C fast path included; each is fuzzed in its own copy of the
tree with a fixed budget, and a survivor then meets the tests.  Prints one
row per mutant and the two figures of issue 13 (fuzzer alone; fuzzer plus
tests) against their goals, and exits 1 while a goal is not met (as
``fuzz`` exits 1 on an escape), 2 on bad usage, 130/143 when interrupted
(the results so far are printed and written first).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

import fuzz
from fuzz.mutants import outcome as O
from fuzz.mutants.catalog import CatalogError
from fuzz.mutants.equivalent import load as load_equivalent
from fuzz.mutants.generate import all_mutants
from fuzz.mutants.model import OPERATORS, Mutant
from fuzz.mutants.pool import run_all
from fuzz.mutants.report import GOAL_FUZZER, GOAL_WITH_TESTS, as_json
from fuzz.mutants.run import DEFAULT_TESTS, Budget
from fuzz.mutants.workspace import WorkspaceError
from sandbox.argtypes import bounded_number, check_output_dir
from sandbox.errors import UsageError
from sandbox.signals import requested_stop

P = TypeVar("P", bound=argparse.ArgumentParser)
#: The checkout the mutants are made from: the one this command runs from (the harness reads it as text).
ROOT = Path(fuzz.__file__).resolve().parent.parent
DEFAULT_SECONDS = 30.0
EXIT_GOALS_MISSED = 1


def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    p = sub.add_parser(
        "mutants",
        help="mutation testing: break the verifier's rules one slip at a time and see whether the fuzzer notices",
        description=(
            "Measure the fuzzer's teeth.  Every mutant is one small slip in one security rule of verifier/ "
            "(Python and the compiled fast path verifier/rules/fastpath.c): a comparison boundary flipped "
            "(< <=, > >=), a '+ 1'/'- 1' lost, one condition dropped from a chain of rejections, a limit off by "
            "one, a rejection removed, or a hand-written semantic slip (fuzz/mutants/catalog.toml).  Each runs "
            "in its own copy of the tree (C recompiled): 'nic-sandbox fuzz --protection verifier' with the budget "
            "below, and if the fuzzer finds nothing, the tests (--tests).  Mutants argued equivalent in "
            "fuzz/mutants/equivalent.toml are not run and not counted.\n\n"
            "The table: mutant id (stable: file.function.operator.hash), file:line, operator, what changed, "
            "the verdict (killed by fuzzer / killed by tests / survived / equivalent / invalid = does not "
            "import or compile), the fuzz class/oracle kind (or test) that killed it, and the seconds into the "
            "campaign of the first finding.  Then the totals and two percentages over the mutants that can "
            f"matter: killed by the fuzzer alone (goal >= {GOAL_FUZZER:g}%) and by fuzzer plus tests "
            f"(goal {GOAL_WITH_TESTS:g}%)."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox mutants                                 every mutant, 30 s each, 2 at a time\n"
            "  nic-sandbox mutants --list                          the mutants and their ids, nothing run\n"
            "  nic-sandbox mutants --files fastpath.c --seconds 10\n"
            "  nic-sandbox mutants --only pins.PinTable.release.semantic.unpin-ignores-dma --no-tests\n"
            "  nic-sandbox mutants --iterations 300 --json --out out/mutants   deterministic budget\n\n"
            "Every mutant is fuzzed first, then the survivors meet the tests (after the tests passed unmutated).\n"
            "At the defaults a whole run takes 1-2 hours on 2 cores (~155 mutants).\n"
            "Ctrl-C or SIGTERM stops the run, prints what is done and writes it (--out).\n"
            "exit codes: 0 both goals met, 1 a goal missed, 2 bad usage, 130/143 interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--seconds",
        type=bounded_number(float, "--seconds", 1, 3600),
        help=f"fuzzing time per mutant (default {DEFAULT_SECONDS:g})",
    )
    budget.add_argument(
        "--iterations",
        type=bounded_number(int, "--iterations", 1, 10**7),
        help="batches per mutant instead of a time: deterministic (same seed, same verdicts)",
    )
    p.add_argument(
        "--seed", type=bounded_number(int, "--seed", 0, 2**63 - 1), default=1, help="campaign seed (default 1)"
    )
    p.add_argument("--only", metavar="IDS", help="comma-separated mutant ids to run (see --list)")
    p.add_argument(
        "--files", metavar="NAMES", help="comma-separated files (or their ends: checks.py, fastpath.c) to mutate"
    )
    p.add_argument("--jobs", type=bounded_number(int, "--jobs", 1, 64), default=2, help="mutants at a time (default 2)")
    p.add_argument(
        "--tests",
        metavar="PATHS",
        default=",".join(DEFAULT_TESTS),
        help=(
            f"comma-separated pytest arguments run against fuzzer survivors (default {','.join(DEFAULT_TESTS)}; "
            "options too, e.g. tests/verifier,--ignore=tests/verifier/test_audit_verify_fast.py)"
        ),
    )
    p.add_argument("--no-tests", action="store_true", help="fuzzer only: survivors are not run against the tests")
    p.add_argument("--list", action="store_true", help="list the mutants (id, file:line, operator, change) and exit")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--out", metavar="DIR", help="also write DIR/report.json")
    p.set_defaults(func=cmd_mutants)


def _select(args: argparse.Namespace) -> tuple[list[Mutant], dict[str, str]]:
    try:
        mutants = all_mutants(ROOT)
        equivalent = load_equivalent({m.id for m in mutants})
    except (CatalogError, LookupError, ValueError) as err:
        raise UsageError(f"the mutant set does not match the sources: {err}") from None
    if args.files:
        wanted = [f.strip() for f in args.files.split(",") if f.strip()]
        unknown = [w for w in wanted if not any(m.file.endswith(w) for m in mutants)]
        if unknown:
            raise UsageError(f"--files: no mutated file ends with {', '.join(unknown)}")
        mutants = [m for m in mutants if any(m.file.endswith(w) for w in wanted)]
    if args.only:
        ids = [i.strip() for i in args.only.split(",") if i.strip()]
        known = {m.id: m for m in mutants}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UsageError(f"--only: no mutant {unknown[0]} (nic-sandbox mutants --list shows the ids)")
        mutants = [known[i] for i in ids]
    return mutants, equivalent


def cmd_mutants(args: argparse.Namespace, out: Console) -> int:
    mutants, equivalent = _select(args)
    if args.list:
        for m in mutants:
            mark = "  (equivalent)" if m.id in equivalent else ""
            print(f"{m.id}\t{m.where}\t{m.operator}\t{m.change}{mark}")
        return 0
    directory = check_output_dir(args.out, "--out") if args.out else None
    tests = () if args.no_tests else tuple(t.strip() for t in args.tests.split(",") if t.strip())
    for t in tests:
        if not t.startswith("-") and not (ROOT / t.split("::")[0]).exists():  # "-..." is a pytest option
            raise UsageError(f"--tests: {t} is not a path under {ROOT}")
    seconds = None if args.iterations else (args.seconds or DEFAULT_SECONDS)
    budget = Budget(seconds, args.iterations, args.seed, tests)
    err = Console(stderr=True)
    total = {"fuzz": sum(1 for m in mutants if m.id not in equivalent), "tests": 0}
    done = {"fuzz": 0, "tests": 0}

    def progress(phase: str, o: O.Outcome) -> None:
        done[phase] += 1
        if phase == "fuzz" and o.verdict == O.SURVIVED and tests:
            total["tests"] += 1
        when = "" if o.first_seconds is None else f" after {o.first_seconds:.1f} s"
        killer = f" ({o.killer}{when})" if o.killer else ""
        count = f"{done[phase]}/{total[phase]}" if phase == "fuzz" else f"{done[phase]}/{total['tests']}"
        err.print(
            f"[{phase} {count}] {o.mutant.id}: {o.verdict}{killer}", markup=False, highlight=False, soft_wrap=True
        )

    with requested_stop() as stop:
        try:
            outcomes, stopped = run_all(ROOT, mutants, equivalent, budget, args.jobs, stop.requested, progress)
        except WorkspaceError as e:
            raise UsageError(str(e)) from None
    budget_info: dict[str, Any] = {
        "seconds": seconds, "iterations": args.iterations, "seed": args.seed, "tests": list(tests), "jobs": args.jobs,
    }  # fmt: skip
    report = as_json(outcomes, budget_info, stopped)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(out, outcomes, report)
    if stopped:
        return stop.exit_code()
    return 0 if report["summary"]["goals_met"] else EXIT_GOALS_MISSED


def _print(out: Console, outcomes: list[O.Outcome], report: dict[str, Any]) -> None:
    table = Table(title="mutants of verifier/ (fuzz/mutants)", show_lines=False)
    for column in ("mutant", "file:line", "operator", "change", "verdict", "killed by", "first (s)"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        m = o.mutant
        first = "" if o.first_seconds is None else f"{o.first_seconds:.1f}"
        killer = o.killer or (o.detail if o.verdict == O.INVALID else "")
        where = f"{Path(m.file).name}:{m.line}"
        table.add_row(*(Text(cell) for cell in (m.id, where, m.operator, m.change, o.verdict, killer, first)))
    out.print(table)
    s = report["summary"]
    counts = ", ".join(f"{n} {v}" for v, n in s["counts"].items() if n)
    out.print(f"{len(outcomes)} mutants: {counts}", markup=False, highlight=False)
    out.print(
        f"killed by the fuzzer alone: {s['killed_by_fuzzer_pct']:.1f}% of {s['judged']} (goal >= {GOAL_FUZZER:g}%); "
        f"by fuzzer + tests: {s['killed_by_fuzzer_or_tests_pct']:.1f}% (goal {GOAL_WITH_TESTS:g}%)",
        markup=False,
        highlight=False,
    )
    survivors = [o.mutant.id for o in outcomes if o.verdict == O.SURVIVED]
    if survivors:
        out.print("survivors: " + ", ".join(survivors), markup=False, highlight=False, soft_wrap=True)
    if report["interrupted"]:
        out.print("interrupted: the mutants not run are left out of the figures", markup=False, highlight=False)
    sys.stdout.flush()


__all__ = ["OPERATORS", "add_parser", "cmd_mutants"]

"""``nic-sandbox fuzz --ray [ADDRESS]``: the campaign on a Ray cluster (fuzz/cluster/), as the command line runs it.

``--ray`` alone (or ``--ray auto``) starts a local cluster for the campaign
and shuts it down afterwards; ``--ray HOST:PORT`` joins a cluster started
with ``ray start --head`` (and ``ray start --address HOST:PORT`` on the
other machines).  ``--jobs N`` is the number of worker actors (default:
the cluster's CPUs).  With ``--audit-log PATH`` each worker writes
``PATH.jobN`` on the node it runs on, and a replacement of a worker that
died writes ``PATH.jobN-retryK``; ``nic-sandbox audit verify``/``summary``
take them as a set (several names, or their directory).  A progress line
is printed every two seconds (to stderr with ``--json``).  With
``--serve`` the driver's reports go to the web view as well, twice a
second (sandbox/commands/fuzz_serve.py ``ray_status``).  Without Ray
installed: one line, exit 2.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from fuzz import case as case_mod
from fuzz.cluster.connect import AUTO, RayMissing, gcs_address
from fuzz.cluster.driver import RayResult, Status, run_ray
from fuzz.cluster.plan import Plan
from fuzz.steps import Attack
from sandbox.commands.fuzz_serve import SEND_S
from sandbox.errors import UsageError
from sandbox.flags import open_audit
from sandbox.signals import StopRequest
from verifier.audit.log import lock_path_of
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection

#: Most worker actors one campaign asks for (blocks are numbered without limit; this bounds a typo).
MAX_WORKERS = 4096
#: Seconds between progress lines.
EVERY_S = 2.0


def tagged_audit(path: str, protection: Protection, options: dict[str, Any], tag: str) -> AuditSink:
    """A Ray worker's own audit log, ``PATH.<tag>`` (module level: pickled by reference to the workers)."""
    return open_audit(f"{path}.{tag}", protection, "never", **options)


def probe(path: str, protection: Protection, options: dict[str, Any]) -> None:
    """Refuse an unusable ``--audit-log`` here, in one line, not on a worker; leave nothing behind."""
    target = Path(f"{path}.job0")
    existed = target.exists()
    open_audit(str(target), protection, "never", **options).close()
    if not existed:
        target.unlink()
        lock_path_of(target).unlink(missing_ok=True)


def run(
    out: Console,
    args: argparse.Namespace,
    protection: Protection,
    seed: int,
    classes: list[str],
    seconds: float | None,
    seeds: list[tuple[str, Attack]],
    options: dict[str, Any],
    stop: StopRequest,
    watch: Callable[[Status], None] | None = None,
) -> RayResult:
    """Run the campaign on the cluster ``--ray`` names; ``watch`` (the web view) gets every driver report."""
    factory = None
    if args.audit_log:
        factory = functools.partial(tagged_audit, args.audit_log, protection, options)
    plan = Plan(
        protection,
        seed,
        classes,
        workers=args.jobs or 0,
        iterations=args.iterations,
        seconds=seconds,
        coverage=bool(args.coverage),
        corpus=seeds,
        audit_factory=factory,
        until_first=args.until_first,
        **({} if args.batch is None else {"batch": args.batch}),
    )
    total = args.iterations
    printed = [time.monotonic()]

    def show(status: Status) -> None:
        if watch is not None:
            watch(status)
            if status.final or time.monotonic() - printed[0] < EVERY_S:
                return
            printed[0] = time.monotonic()
        elif status.final:
            return
        p = status.progress
        batches, descs = max(p.iterations, p.live_iterations), max(p.descriptors, p.live_descriptors)
        rate = descs / status.elapsed if status.elapsed > 0 else 0.0
        done = f"{batches:,}/{total:,} batches" if total else f"{batches:,} batches"
        line = (
            f"ray: {status.elapsed:5.1f} s  {done}  {descs:,} desc ({rate:,.0f}/s)  "
            f"{p.findings} distinct escapes  {status.running} workers running  {status.retries} retried"
        )
        if args.json:
            print(line, file=sys.stderr, flush=True)
        else:
            out.print(line, markup=False, highlight=False)

    if args.ray != AUTO:
        try:
            gcs_address(args.ray)
        except ValueError as err:  # neither auto, HOST:PORT nor ray://: Ray's parser would raise a traceback
            raise UsageError(f"--ray {args.ray}: {err}") from None
    try:
        every = EVERY_S if watch is None else SEND_S
        return run_ray(plan, args.ray, stop=stop.requested, progress=show, every=every)
    except RayMissing as err:
        raise UsageError(str(err)) from None
    except ConnectionError as err:
        raise UsageError(f"--ray {args.ray}: cannot reach the cluster ({err})") from None


def write_cases(ray: RayResult, directory: Path) -> dict[tuple[str, str], str]:
    """Each distinct finding's case as its worker minimised it (minimised here if no worker sent one)."""
    result = ray.result
    written: dict[tuple[str, str], str] = {}
    for finding in result.findings:
        sent = ray.cases.get(finding.key)
        if sent is not None:
            case = case_mod.Case.from_dict(sent)
        else:
            case = case_mod.Case.from_finding(finding, result.seed, result.protection)
            case = case if result.interrupted else case_mod.minimise(case)
        name = f"{result.protection.value}-{finding.cls}-{finding.kind}"
        written[finding.key] = str(case_mod.write_case(case, directory / "cases", name))
    return written


def report(ray: RayResult, address: str, audit_log: str | None) -> dict[str, Any]:
    """The ``ray`` section of report.json: where it ran, what was retried, the audit logs written."""
    seconds, calls = ray.coordination
    return {
        "address": address,
        "workers": ray.result.jobs,
        "nodes": len(ray.nodes),
        "retried": [r.as_dict() for r in ray.retries],
        **({"not_run": {str(j): b for j, b in ray.not_run.items()}} if ray.not_run else {}),
        "coordination": {"calls": calls, "seconds": round(seconds, 3)},
        **({"audit_logs": [f"{audit_log}.{tag}" for tag in ray.tags]} if audit_log else {}),
    }


def describe(section: dict[str, Any]) -> list[str]:
    """Lines for report.md and the terminal: the cluster, and every retried worker."""
    lines = [f"Ray: {section['workers']} workers on {section['nodes']} node(s) ({section['address']})."]
    for r in section["retried"]:
        blocks = ", ".join(str(b) for b in r["rerun"])
        lines.append(
            f"Retried: job {r['job']} died on node {r['node'][:12]} ({r['error']}); "
            f"replacement {r['attempt']} reran blocks {blocks}."
        )
    for job, blocks in section.get("not_run", {}).items():
        lines.append(f"Not run: job {job} gave up after its retries; blocks {', '.join(map(str, blocks))} missing.")
    return lines

"""``nic-sandbox fuzz``: run a fuzzing campaign against a protection mode, or replay one reproducer.

A campaign prints a live progress bar on a terminal, then a table per attack
class, and writes ``DIR/report.json``, ``DIR/report.md`` and one minimised
reproducer per distinct escape in ``DIR/cases/``.  Exit codes gate CI: 1
when anything escaped, 0 when nothing did, 2 on bad usage (one line on
stderr, as everywhere in ``nic-sandbox``), 3 when a ``--jobs`` worker died
(SIGKILL, the OOM killer): the others stop between batches and the report
holds what they found, marked ``interrupted``.  ``fuzz replay CASE.json`` exits
1 while the case still escapes and 0 once it does not.  ``fuzz`` alone is
``fuzz campaign``; ``replay`` is a sub-command of its own, with its own flags.

``--serve`` shows the running campaign in a browser, syz-manager style
(sandbox/commands/fuzz_serve.py, auditor/web/campaign.py).
``--ray [ADDRESS]`` runs it on a Ray cluster, worker actors instead of
processes (sandbox/commands/fuzz_ray.py, fuzz/cluster/).
``--jobs N`` runs the campaign in N worker processes (fuzz/jobs.py; with
``--audit-log PATH`` each writes ``PATH.jobN``), ``--coverage`` turns on
coverage feedback over verifier/ (fuzz/coverage.py), and ``--corpus DIR``
replays DIR's cases first, mutates them, and adds new findings and
coverage-kept inputs to DIR.

Nothing found is lost: every output path (DIR, DIR/cases, the audit log,
``--corpus DIR``) is tried before the first descriptor is sent, and Ctrl-C
or SIGTERM stops the campaign between batches and writes the report of
what was done, marked ``interrupted``, with every finding and reproducer so
far; the exit code is then 130 (SIGINT) or 143 (SIGTERM).  A time budget
(``--seconds``) includes the end check of the audit log (fuzz/budget.py).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fuzz import case as case_mod
from fuzz.campaign import CampaignResult, ProgressInfo, run_campaign
from fuzz.classes import CLASSES, OPT_IN, select
from fuzz.jobs import MAX_JOBS, WorkerDied, run_jobs
from fuzz.steps import Attack, ReproducerError
from fuzz.virtio_arena import MODES as VIRTIO_MODES
from sandbox.argtypes import bounded_number, check_output_path
from sandbox.commands import fuzz_ray, fuzz_serve
from sandbox.errors import UsageError, print_error
from sandbox.flags import FUZZ_AUDIT_SCHEMA, add_audit_flags, open_audit
from sandbox.parser import Parser
from sandbox.signals import StopRequest, requested_stop
from verifier.audit.log import AuditLog, DiskUse, lock_path_of
from verifier.audit.memory import MemoryAudit
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import PROTECTION_HELP, Protection

P = TypeVar("P", bound=argparse.ArgumentParser)
DEFAULT_SECONDS = 10.0
DEFAULT_OUT = "out/fuzz"
EXIT_ESCAPE = 1
#: A --jobs worker died (killed, out of memory): the campaign stopped early; the report holds what the others found.
EXIT_WORKER_DIED = 3


_number = bounded_number


def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    """Add ``fuzz [campaign]`` and ``fuzz replay CASE.json`` to the ``nic-sandbox`` sub-command set."""
    modes = "; ".join(f"{m.value}: {PROTECTION_HELP[m]}" for m in Protection)
    names = ", ".join(CLASSES) + "; by name only: " + ", ".join(OPT_IN) + " (virtio: every virtio-* class)"
    fuzz = sub.add_parser(
        "fuzz",
        help="play the attacker: malicious descriptors against a protection mode, judged by an independent oracle",
        usage="%(prog)s [campaign] [flags of a campaign] | %(prog)s replay CASE.json [--protection MODE] [--json]",
        description=(
            "Mallory (nic2) posts batches of malicious descriptors, one attack class at a time; eve (nic3) "
            "feeds her RX queue.  An oracle that shares no code with the verifier watches every DMA, every "
            "frame on the wires and the bytes of kernel memory and of alice's buffers.  Anything it sees "
            "is an escape; each distinct one (class and kind) is minimised into a reproducer.\n\n"
            f"attack classes: {names}.\n\n"
            "'fuzz replay CASE.json' re-runs one reproducer step by step; it exits 1 while the case "
            "still escapes and 0 once it does not, so a fixed bug's reproducer is a regression test."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox fuzz --protection none --seconds 10          escapes in every class that applies\n"
            "  nic-sandbox fuzz --protection verifier --iterations 2000 --seed 7\n"
            "  nic-sandbox fuzz --classes kernel-tx,straddle --out /tmp/fz --audit-log /tmp/fz/audit.jsonl\n"
            "  nic-sandbox fuzz replay fuzz/corpus/none-kernel-tx-leak.json\n"
            "  nic-sandbox fuzz replay fuzz/corpus/none-kernel-tx-leak.json --protection verifier\n"
            "  nic-sandbox fuzz --protection unsafe-inplace --classes race --iterations 4   the TOCTOU race\n"
            "  nic-sandbox fuzz replay fuzz/corpus/unsafe-inplace-race-leak.json\n"
            "  nic-sandbox fuzz --jobs 2 --iterations 2000 --seed 7      two worker processes, merged\n"
            "  nic-sandbox fuzz --coverage --corpus /tmp/corp --iterations 600   keep inputs that reach new lines\n"
            "  nic-sandbox fuzz --ray --jobs 2 --iterations 2000 --seed 7     two Ray actors on a local cluster\n"
            "  nic-sandbox fuzz --ray 10.0.0.1:6379 --seconds 600    on a cluster started with 'ray start --head'\n"
            "  nic-sandbox fuzz --protection none --seconds 60 --serve   watch it at http://127.0.0.1:8016/\n"
            "  nic-sandbox fuzz --ray --jobs 2 --seconds 60 --serve     a Ray campaign, watched the same way\n"
            "  (the replay lines run from the repository root: fuzz/corpus/ is the committed corpus)\n\n"
            "exit codes: 0 no escape, 1 an escape (campaign) or still escaping (replay), 2 bad usage, "
            "3 a --jobs worker died (the report holds what the others found)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        default_command="campaign",
    )
    actions = fuzz.add_subparsers(dest="fuzz", metavar="ACTION", title="actions", prog=fuzz.prog, parser_class=Parser)
    actions.required = True
    campaign = actions.add_parser(
        "campaign",
        help="run a fuzzing campaign (the default: 'nic-sandbox fuzz' is 'nic-sandbox fuzz campaign')",
        description=(
            "Run a campaign: batches of malicious descriptors, class by class, against one protection mode; "
            "print a table per class and write DIR/report.json, DIR/report.md and one minimised reproducer per "
            f"distinct escape in DIR/cases/.\n\nattack classes: {names}."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox fuzz --protection none --seconds 10\n"
            "  nic-sandbox fuzz campaign --protection verifier --iterations 2000 --seed 7\n\n"
            "exit codes: 0 no escape, 1 an escape, 2 bad usage, 3 a --jobs worker died (the report holds what the "
            "others found)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget = campaign.add_mutually_exclusive_group()
    budget.add_argument(
        "--seconds", type=_number(float, "--seconds", 0.01, 86400), help=f"run this long (default {DEFAULT_SECONDS:g})"
    )
    budget.add_argument(
        "--iterations", type=_number(int, "--iterations", 1, 10**9), help="run this many batches (deterministic)"
    )
    campaign.add_argument("--seed", type=_number(int, "--seed", 0, 2**63 - 1), help="campaign seed (default 1)")
    campaign.add_argument(
        "--protection",
        choices=[m.value for m in Protection],
        help=f"mode under attack (default verifier). {modes}",
    )
    campaign.add_argument("--classes", metavar="LIST", help="comma-separated attack classes (default: all)")
    campaign.add_argument(
        "--batch", type=_number(int, "--batch", 1, 255), help="descriptors per doorbell (default 128)"
    )
    campaign.add_argument("--out", metavar="DIR", help=f"report and reproducers go here (default {DEFAULT_OUT})")
    audit = campaign.add_mutually_exclusive_group()
    audit.add_argument(
        "--audit-log",
        metavar="PATH",
        help="write every rejection to this hash-chained log (default: DIR/audit.jsonl, appended to)",
    )
    audit.add_argument(
        "--no-audit-log",
        action="store_true",
        help="count rejections in memory only: no audit trail; the same campaign takes about 0.7 of the time",
    )
    add_audit_flags(campaign, schema=FUZZ_AUDIT_SCHEMA)
    campaign.add_argument(
        "--jobs",
        type=_number(int, "--jobs", 1, fuzz_ray.MAX_WORKERS),
        help=f"worker processes (at most {MAX_JOBS}) with disjoint blocks, merged (default 1; with --audit-log each "
        "writes PATH.jobN); with --ray: worker actors (default: the cluster's CPUs)",
    )
    campaign.add_argument(
        "--until-first",
        action="store_true",
        help="end the campaign after the batch that gave its first finding (with --jobs or --ray: each worker "
        "after its own); its time is in the report (findings[].seconds): how long a broken verifier survives",
    )
    campaign.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run the workers as Ray actors: 'auto' (the default) starts a local cluster for the campaign, "
        "HOST:PORT joins one started with 'ray start --head'; --jobs N actors (default: the cluster's CPUs); "
        "--serve shows it live; needs pip install 'nic-sandbox[ray]'",
    )
    campaign.add_argument(
        "--coverage",
        action="store_true",
        default=None,
        help="coverage feedback: keep batches that reach new lines of verifier/ and mutate them (slower)",
    )
    campaign.add_argument(
        "--corpus",
        metavar="DIR",
        help="replay every *.json case in DIR first, start from them, and add new findings and kept inputs to DIR",
    )
    campaign.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    fuzz_serve.add_flags(campaign)
    campaign.set_defaults(func=cmd_fuzz)

    replay = actions.add_parser(
        "replay",
        help="re-run one reproducer step by step: exit 1 while it still escapes, 0 once it does not",
        description=(
            "Re-run one reproducer (a case written by a campaign, or one of fuzz/corpus/) step by step in a fresh "
            "machine, and say for each step what the kernel refused and what escaped.  Exits 1 while the case "
            "still escapes and 0 once it does not, so a fixed bug's reproducer is a regression test."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox fuzz replay fuzz/corpus/none-kernel-tx-leak.json\n"
            "  nic-sandbox fuzz replay fuzz/corpus/none-kernel-tx-leak.json --protection verifier\n"
            "  nic-sandbox fuzz replay fuzz/corpus/unsafe-inplace-race-leak.json --json\n"
            "  (run from the repository root: fuzz/corpus/ is the committed corpus)\n\n"
            "exit codes: 0 no escape, 1 still escapes, 2 bad usage or an unreadable case"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("case", metavar="CASE.json", help="the reproducer to replay")
    replay.add_argument(
        "--protection",
        choices=[m.value for m in Protection],
        help=f"mode to replay it under (default: the one it was found under). {modes}",
    )
    replay.add_argument("--json", action="store_true", help="print the steps and the verdict as JSON")
    replay.set_defaults(func=cmd_replay_args)


def cmd_replay_args(args: argparse.Namespace, out: Console) -> int:
    return cmd_replay(args.case, args.protection, args.json, out)


def cmd_fuzz(args: argparse.Namespace, out: Console) -> int:
    try:
        classes = select(args.classes)
    except ValueError as err:
        raise UsageError(str(err)) from None
    protection = Protection(args.protection or "verifier")
    virtio = [c.name for c in classes if c.machine == "virtio"]
    if virtio and protection not in VIRTIO_MODES:
        modes = " and ".join(m.value for m in VIRTIO_MODES)
        raise UsageError(
            f"--classes {','.join(virtio)}: virtio NICs support --protection {modes}, not {protection.value}"
        )
    seed = 1 if args.seed is None else args.seed
    seconds = args.seconds if args.iterations is None else None
    if seconds is None and args.iterations is None:
        seconds = DEFAULT_SECONDS
    directory = Path(args.out or DEFAULT_OUT)
    if args.audit_log is None and not args.no_audit_log:
        args.audit_log = str(directory / "audit.jsonl")  # the campaign's audit log lives beside its report
    jobs = args.jobs or 1
    if args.ray is None and jobs > MAX_JOBS:
        raise UsageError(f"--jobs: at most {MAX_JOBS} worker processes on one machine, got {jobs} (more with --ray)")
    corpus_dir = Path(args.corpus) if args.corpus else None
    _check_outputs(directory, corpus_dir)
    replayed, seeds = _load_corpus(corpus_dir, protection) if corpus_dir is not None else ([], [])
    serving = None
    if args.serve:
        logs: list[str] = []  # the campaign's audit log(s): each --jobs worker (and Ray actor) writes PATH.jobN
        if args.audit_log and args.ray is not None:
            # a Ray worker's log is on its node; without --jobs their number is the cluster's CPUs, known only later
            logs = [f"{args.audit_log}.job{j}" for j in range(args.jobs or 0)]
        elif args.audit_log:
            logs = [f"{args.audit_log}.job{j}" for j in range(jobs)] if jobs > 1 else [args.audit_log]
        for log in logs:  # an unusable path is one line before the server starts (the campaign opens it later)
            check_output_path(log, "--audit-log")
        serving = fuzz_serve.Serving(args, protection, directory, logs)
        budget = {"iterations": args.iterations, "seconds": seconds}
        serving.start([c.name for c in classes], seed, jobs if args.ray is None else args.jobs or 0, logs, budget)
    try:
        code, interrupted = _campaign(
            out, args, protection, seed, classes, seconds, directory, jobs, corpus_dir, replayed, seeds, serving
        )
        if serving is not None:
            serving.linger(interrupted)
    finally:
        if serving is not None:
            serving.close()
    return code


def _campaign(
    out: Console,
    args: argparse.Namespace,
    protection: Protection,
    seed: int,
    classes: list[Any],
    seconds: float | None,
    directory: Path,
    jobs: int,
    corpus_dir: Path | None,
    replayed: list[dict[str, Any]],
    seeds: list[tuple[str, Attack]],
    serving: fuzz_serve.Serving | None,
) -> tuple[int, bool]:
    """Run the campaign as the flags say, write and print its report; (exit code, whether it was interrupted)."""
    audit_logs: list[str] = []
    disk: DiskUse | None = None
    lost: str | None = None  # a --jobs worker that died, in words
    ray_run: fuzz_ray.RayResult | None = None
    if args.ray is not None:
        if args.audit_log:
            try:
                fuzz_ray.probe(args.audit_log, protection, _audit_options(args))
            except (ValueError, OSError) as err:
                raise UsageError(_cannot_use(args.audit_log, err)) from None
        with requested_stop() as stop:
            names = [c.name for c in classes]
            watch = None if serving is None else serving.ray_status
            ray_run = fuzz_ray.run(
                out, args, protection, seed, names, seconds, seeds, _audit_options(args), stop, watch
            )
        result = ray_run.result
    elif jobs > 1:
        factory = None
        if args.audit_log:
            audit_logs = [f"{args.audit_log}.job{j}" for j in range(jobs)]
            try:  # refuse a bad path here, with one line, not in a worker
                for path in audit_logs:
                    existed = Path(path).exists()  # an existing log is appended to, never removed
                    open_audit(path, protection, "never", **_audit_options(args)).close()
                    if not existed:  # the probe leaves nothing behind: no log, no lock file
                        Path(path).unlink()
                        lock_path_of(Path(path)).unlink(missing_ok=True)
            except (ValueError, OSError) as err:
                raise UsageError(_cannot_use(path, err)) from None
            factory = functools.partial(_job_audit, args.audit_log, protection, _audit_options(args))
        kwargs: dict[str, Any] = {"until_first": args.until_first}
        if args.batch is not None:
            kwargs["batch"] = args.batch
        with requested_stop() as stop:
            try:
                result = run_jobs(
                    protection,
                    seed,
                    [c.name for c in classes],
                    jobs,
                    iterations=args.iterations,
                    seconds=seconds,
                    audit_factory=factory,
                    coverage=bool(args.coverage),
                    corpus=seeds,
                    stop=stop.requested,
                    progress=None if serving is None else serving.progress,
                    **kwargs,
                )
            except WorkerDied as died:  # the others stopped; what they found is written below, then exit 3
                if died.partial is None:
                    print_error(f"{died}; no worker returned a result: nothing to report")
                    return EXIT_WORKER_DIED, False
                result, lost = died.partial, str(died)
    else:
        audit: AuditSink
        if args.audit_log:
            try:
                audit = open_audit(args.audit_log, protection, "never", **_audit_options(args))
            except (ValueError, OSError) as err:
                raise UsageError(_cannot_use(args.audit_log, err)) from None
        else:
            audit = MemoryAudit(keep=1000)
        try:
            with requested_stop() as stop:
                result = _run(out, args, protection, seed, classes, seconds, audit, seeds, stop, serving)
        finally:
            audit.close()
        disk = audit.disk if isinstance(audit, AuditLog) else None
    # what was found is written even when interrupted (a second Ctrl-C or SIGTERM still ends at once)
    if serving is not None:
        serving.ending(result, counts=ray_run is None)
    cases = _write_cases(result, directory) if ray_run is None else fuzz_ray.write_cases(ray_run, directory)
    added = _grow_corpus(result, cases, corpus_dir) if corpus_dir is not None else []
    report = _report(result, cases, args.audit_log)
    if result.interrupted:
        report["interrupted"] = stop.name if lost is None else "worker died"
    if lost is not None:
        report["worker_died"] = lost
    if audit_logs:
        report["audit_logs"] = audit_logs
    if ray_run is not None:
        report["ray"] = fuzz_ray.report(ray_run, args.ray, args.audit_log)
        if args.audit_log:
            report["audit_logs"] = report["ray"]["audit_logs"]
    if corpus_dir is not None:
        report["corpus"] = {"dir": str(corpus_dir), "replayed": replayed, "added": added}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / "report.md").write_text(_markdown(report))
    if serving is not None:
        serving.finish(result, report, directory)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(out, result, cases, directory, replayed, added)
        for line in fuzz_ray.describe(report["ray"]) if "ray" in report else []:
            out.print(line, markup=False, highlight=False)
        if disk is not None:
            out.print(f"audit log {args.audit_log}: {disk.line()}", markup=False, highlight=False, soft_wrap=True)
    if lost is not None:
        print_error(f"{lost}; the others stopped, and what they found is in {directory}")
        return EXIT_WORKER_DIED, False
    if result.interrupted:
        return stop.exit_code(), True  # 130 after Ctrl-C, 143 after SIGTERM
    still = any(r["verdict"] == "escapes" for r in replayed)
    return EXIT_ESCAPE if result.escapes or still else 0, False


def _check_outputs(directory: Path, corpus_dir: Path | None) -> None:
    """Try every directory the campaign will write to, before it sends anything: a campaign that could not keep its
    findings must not start (it used to run to the end and then crash, losing them all)."""
    places = [("--out", directory), ("--out", directory / "cases")]
    if corpus_dir is not None:
        places.append(("--corpus", corpus_dir))
    for flag, where in places:
        if where.exists() and not where.is_dir():
            raise UsageError(f"{flag} {where}: not a directory")
        try:
            if where.name != "cases":  # DIR/cases is made when the first reproducer is written
                where.mkdir(parents=True, exist_ok=True)
            if where.is_dir():
                with tempfile.TemporaryFile(dir=where):
                    pass
        except OSError as err:
            raise UsageError(_cannot_use(where, err, flag)) from None
    for name in ("report.json", "report.md"):
        target = directory / name
        if target.is_dir() or (target.exists() and not os.access(target, os.W_OK)):
            raise UsageError(f"--out {directory}: cannot write {target}")


def _cannot_use(path: str | Path, err: Exception, flag: str = "--audit-log") -> str:
    """One line: the flag, the path and what the system said (a ValueError from open_audit says it all already)."""
    if isinstance(err, ValueError):
        return str(err)
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return f"{flag} {path}: cannot write there ({reason})"


def _audit_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--audit-clock``, ``--audit-max-bytes`` and ``--audit-schema`` as ``open_audit`` takes them."""
    return {"clock": args.audit_clock, "max_bytes": args.audit_max_bytes, "schema": args.audit_schema}


def _job_audit(path: str, protection: Protection, options: dict[str, Any], job: int) -> AuditSink:
    """Worker ``job``'s own audit log: ``PATH.jobN`` (module level: picklable for spawned workers)."""
    return open_audit(f"{path}.job{job}", protection, "never", **options)


def _load_corpus(directory: Path, protection: Protection) -> tuple[list[dict[str, Any]], list[tuple[str, Attack]]]:
    """Replay every case in DIR under ``protection``; return the verdicts and the cases as sequences to mutate."""
    replayed: list[dict[str, Any]] = []
    seeds: list[tuple[str, Attack]] = []
    if not directory.exists():
        return replayed, seeds
    if not directory.is_dir():
        raise UsageError(f"--corpus {directory}: not a directory")
    for path in sorted(directory.glob("*.json")):
        try:
            found = case_mod.Case.load(path)
        except ReproducerError as err:
            raise UsageError(f"--corpus: {err}") from None
        again = case_mod.replay(found, protection)
        replayed.append(
            {"case": str(path), "class": found.cls, "verdict": again.verdict, "kinds": sorted(again.kinds())}
        )
        seeds.append((found.cls, Attack(found.steps, fresh=True, machine=found.machine)))
    return replayed, seeds


def _grow_corpus(result: CampaignResult, cases: dict[tuple[str, str], str], directory: Path) -> list[str]:
    """Copy new distinct findings' cases and write the coverage-kept batches into DIR; return the new paths."""
    added: list[str] = []
    directory.mkdir(parents=True, exist_ok=True)
    for path in cases.values():
        target = directory / Path(path).name
        if not target.exists():
            target.write_text(Path(path).read_text())
            added.append(str(target))
    for kept in result.kept:
        ops = kept.batch.ops()
        digest = hashlib.sha1(json.dumps(ops, sort_keys=True).encode()).hexdigest()[:12]
        target = directory / f"cov-{kept.cls}-{digest}.json"
        if not target.exists():
            new = case_mod.Case(
                result.seed, result.protection, kept.cls, kept.batch.steps, {"new_lines": kept.new_lines},
                machine=kept.batch.machine,
            )  # fmt: skip
            target.write_text(new.dumps())
            added.append(str(target))
    return added


def _run(
    out: Console,
    args: argparse.Namespace,
    protection: Protection,
    seed: int,
    classes: list[Any],
    seconds: float | None,
    audit: AuditSink,
    seeds: list[tuple[str, Attack]],
    stop: StopRequest,
    serving: fuzz_serve.Serving | None = None,
) -> CampaignResult:
    kwargs: dict[str, Any] = {"iterations": args.iterations, "seconds": seconds, "audit": audit}
    kwargs["stop"] = stop.requested
    kwargs.update(coverage=bool(args.coverage), corpus=seeds, until_first=args.until_first)
    if args.batch is not None:
        kwargs["batch"] = args.batch
    web = None if serving is None else serving.progress
    if args.json or not out.is_terminal:
        return run_campaign(protection, seed, classes, progress=web, **kwargs)
    with Progress(
        TextColumn(f"[bold]fuzz {protection.value}"),
        BarColumn(),
        TextColumn("{task.fields[rate]} desc/s"),
        TextColumn("{task.fields[descs]} tried"),
        TextColumn("{task.fields[rejected]} rejected"),
        TextColumn("[red]{task.fields[escapes]} escapes"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[classes]}"),
        console=out,
        transient=True,
    ) as bar:
        total = float(args.iterations) if args.iterations is not None else float(seconds or 1)
        task: TaskID = bar.add_task("fuzz", total=total, rate="-", descs="0", rejected="0", escapes="0", classes="")

        def show(info: ProgressInfo) -> None:
            done = float(info.iterations) if info.total is not None else min(info.elapsed, total)
            rate = f"{info.descriptors / info.elapsed:,.0f}" if info.elapsed > 0 else "-"
            bar.update(
                task,
                completed=done,
                rate=rate,
                descs=f"{info.descriptors:,}",
                rejected=f"{info.rejected:,}",
                escapes=f"{info.escapes:,}",
                # per class: descriptors tried and (in red) escapes, as a compact line under the bar
                classes="\n"
                + "  ".join(
                    f"{name} {gen:,}" + (f"[red]/{esc}[/]" if esc else "")
                    for name, (gen, esc) in info.per_class.items()
                ),
            )

        kwargs["progress"] = fuzz_serve.both(show, web)
        return run_campaign(protection, seed, classes, **kwargs)


def _write_cases(result: CampaignResult, directory: Path) -> dict[tuple[str, str], str]:
    """Minimise each distinct escape and write it to DIR/cases/; return (class, kind) -> path.

    A case that does not escape when replayed alone in a fresh arena (its
    escape needed the state earlier batches left) is still written, and
    flagged in the report (``reproduces: false``).  An interrupted campaign writes each case as found, not
    minimised (minimising replays it many times: the user asked to stop).
    """
    written: dict[tuple[str, str], str] = {}
    for finding in result.findings:
        found = case_mod.Case.from_finding(finding, result.seed, result.protection)
        small = found if result.interrupted else case_mod.minimise(found)
        path = case_mod.write_case(
            small, directory / "cases", f"{result.protection.value}-{finding.cls}-{finding.kind}"
        )
        written[finding.key] = str(path)
    return written


#: What the table's columns count: two units (descriptors, audit records) and the oracle's findings, so they need
#: not add up across a row.
COLUMNS = (
    "descriptors: malicious descriptors tried; audit records: refusals logged during those batches (register "
    "writes and unpins of a sequence are logged too); accepted, no escape: descriptors of batches in which the "
    "oracle saw nothing, less their refusals; escape findings: what the oracle saw (one descriptor can cause several)"
)


def _report(result: CampaignResult, cases: dict[tuple[str, str], str], audit_log: str | None) -> dict[str, Any]:
    return {
        "version": 1,
        "scenario": "attack",
        "protection": result.protection.value,
        "seed": result.seed,
        "batch": result.batch,
        "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "descriptors": result.descriptors,
        "descriptors_per_second": round(result.rate),
        "escapes": result.escapes,
        "audit_log": audit_log,
        "classes": {
            name: {
                **result.stats[name].as_dict(),
                "escapes_in_principle": sorted(m.value for m in CLASSES[name].escapes_in),
            }
            for name in result.classes
        },
        "findings": [
            {
                "class": f.cls,
                "kind": f.kind,
                "what": f.escape.what,
                "case": cases.get(f.key),
                "reproduces": _reproduces(cases.get(f.key)),
                "seconds": round(f.seconds, 3),
            }
            for f in result.findings
        ],
        "audit_problems": [e.what for e in result.audit_problems],
        "jobs": result.jobs,
        **({"not_run": result.not_run} if result.not_run else {}),
        **(
            {}
            if result.audit_checked
            else {"audit_check": "skipped: interrupted (nic-sandbox audit verify checks the log)"}
        ),
        **({} if result.coverage is None else {"coverage": {"lines": len(result.coverage), "kept": len(result.kept)}}),
    }


def _reproduces(path: str | None) -> bool:
    return path is not None and case_mod.replay(case_mod.Case.load(path)).escaped


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# nic-sandbox fuzz: protection {report['protection']}, seed {report['seed']}",
        "",
        f"{report['descriptors']:,} malicious descriptors in {report['iterations']:,} batches of up to "
        f"{report['batch']}, {report['seconds']} s ({report['descriptors_per_second']:,}/s); "
        f"**{report['escapes']:,} escapes**.",
        "",
    ]
    if report.get("interrupted"):
        lines += [f"**Interrupted by {report['interrupted']}**: what was done until then.", ""]
    lines += [
        "| class | descriptors | audit records | accepted, no escape | escape findings | can escape in |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, s in report["classes"].items():
        modes = ", ".join(s["escapes_in_principle"]) or "-"
        lines.append(
            f"| {name} | {s['generated']:,} | {s['rejected']:,} | {s['accepted_and_safe']:,} "
            f"| {s['escapes']:,} | {modes} |"
        )
    lines += ["", COLUMNS]
    if report.get("not_run"):
        lines += ["", f"Not run in the budget given: {', '.join(report['not_run'])}."]
    if "ray" in report:
        lines += ["", *fuzz_ray.describe(report["ray"])]
    if report.get("audit_check"):
        lines += ["", f"Audit end check {report['audit_check']}."]
    if "coverage" in report:
        lines += [
            "",
            f"Coverage: {report['coverage']['lines']:,} lines of verifier/, {report['coverage']['kept']} inputs kept.",
        ]
    lines += ["", "## Distinct escapes", ""]
    if not report["findings"]:
        lines.append("None.")
    for f in report["findings"]:
        lines.append(f"- **{f['class']}** / {f['kind']}: {f['what']} — reproducer `{f['case']}`")
    return "\n".join(lines) + "\n"


def _print(
    out: Console,
    result: CampaignResult,
    cases: dict[tuple[str, str], str],
    directory: Path,
    replayed: list[dict[str, Any]],
    added: list[str],
) -> None:
    for r in replayed:
        verdict = f"[red]still escapes[/] ({', '.join(r['kinds'])})" if r["verdict"] == "escapes" else "no escape"
        out.print(f"corpus {r['case']}: {verdict}", highlight=False)
    table = Table(
        title=(
            f"fuzz: protection {result.protection.value}, seed {result.seed}, {result.iterations:,} batches, "
            f"{result.seconds:.1f} s, {result.rate:,.0f} desc/s" + (f", {result.jobs} jobs" if result.jobs > 1 else "")
        )
    )
    for col in ("class", "descriptors", "audit records", "accepted, no escape", "escape findings", "can escape in"):
        table.add_column(col, justify="left" if col in ("class", "can escape in") else "right", no_wrap=True)
    for name in result.classes:
        s = result.stats[name]
        modes = ", ".join(sorted(m.value for m in CLASSES[name].escapes_in)) or "-"
        esc = f"[red]{s.escapes:,}[/]" if s.escapes else "0"
        table.add_row(name, f"{s.generated:,}", f"{s.rejected:,}", f"{s.accepted_safe:,}", esc, modes)
    out.print(table)
    out.print(COLUMNS, markup=False, highlight=False, soft_wrap=True)
    if result.interrupted:
        out.print("[yellow]interrupted[/]: the table and the findings are what was done until then")
    if result.not_run:
        out.print(f"[yellow]not run in the budget given:[/] {', '.join(result.not_run)}", highlight=False)
    if result.findings:
        out.print(f"[red]{result.escapes:,} escapes[/], {len(result.findings)} distinct:")
        for f in result.findings:
            out.print(f"  {f.cls} / {f.kind}: {f.escape.what}", markup=False, highlight=False)
            out.print(f"    reproducer: {cases[f.key]}", markup=False, highlight=False)
    elif not result.audit_problems:
        out.print("[green]no escapes[/]")
    for problem in result.audit_problems:
        out.print(f"[red]audit incomplete:[/] {problem.what}")
    if result.coverage is not None:
        out.print(f"coverage: {len(result.coverage):,} lines of verifier/, {len(result.kept)} inputs kept")
    if added:
        out.print(f"corpus: {len(added)} new case(s) added", highlight=False)
    out.print(f"report: {directory / 'report.json'}, {directory / 'report.md'}", markup=False, highlight=False)


def cmd_replay(path: str, protection: str | None, as_json: bool, out: Console) -> int:
    try:
        found = case_mod.Case.load(path)
        result = case_mod.replay(found, protection)
    except ReproducerError as err:
        raise UsageError(f"{path}: {err}" if not str(err).startswith(path) else str(err)) from None
    if as_json:
        print(
            json.dumps(
                {
                    "case": path,
                    "protection": result.protection.value,
                    "verdict": result.verdict,
                    "steps": [
                        {
                            "op": s.step.kind,
                            "rejected": s.rejected,
                            "reasons": sorted(set(s.reasons)),
                            "escapes": [{"kind": e.kind, "what": e.what} for e in s.escapes],
                            "notes": s.notes,
                        }
                        for s in result.steps
                    ],
                },
                indent=2,
            )
        )
        return EXIT_ESCAPE if result.escaped else 0
    out.print(
        f"replay {path}: class {found.cls}, found under {found.protection.value}, "
        f"replayed under {result.protection.value}, seed {found.seed}",
        markup=False,
        highlight=False,
    )
    for n, step in enumerate(result.steps, 1):
        out.print(f"{n}. {step.step.describe()}", markup=False, highlight=False)
        if step.rejected:
            reasons = ", ".join(f"{r} x{step.reasons.count(r)}" for r in dict.fromkeys(step.reasons))
            out.print(f"   kernel {step.step.VERB} {step.rejected}: {reasons}", markup=False, highlight=False)
        for note in step.notes:
            out.print(f"   {note}", markup=False, highlight=False)
        for e in step.escapes:
            out.print(f"   ESCAPE ({e.kind}): {e.what}", markup=False, highlight=False)
        if not step.rejected and not step.escapes and not step.notes:
            out.print(f"   {step.step.quiet()}", markup=False, highlight=False)
    if result.escaped:
        out.print(f"[red]still escapes[/] under {result.protection.value}")
        return EXIT_ESCAPE
    out.print(f"[green]no escape[/] under {result.protection.value}")
    return 0

"""``nic-sandbox bench``: measurements a student runs to see an idea of asynchronous I/O in numbers.

``bench doorbell`` (docs/async-io.md, section 1) times the doorbell of each
protection mode over batch sizes 1 … 4096 and fits ``cost(n) = a + b·n``:
the fixed cost of crossing into the kernel, the cost of each descriptor, and
the batch at which the two are equal.  The measuring is measure/doorbell*.py;
this module only reads the flags, prints and writes what was measured.
Exit codes: 0 done, 2 bad usage, 130/143 interrupted (what was measured is
printed and written first).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import TypeVar

from rich.console import Console

from measure import doorbell_plot, doorbell_report
from measure.doorbell import DEFAULT_MAX_BATCH, DEFAULT_REPEATS, sweep
from measure.doorbell_rig import MAX_BATCH
from measure.linear_fit import log_spaced
from sandbox.argtypes import MAX_NUMBER_TEXT, bounded_number, check_output_path, require_matplotlib, writing
from sandbox.errors import UsageError
from sandbox.parser import Parser
from sandbox.signals import requested_stop
from verifier.modes.protection import PROTECTION_HELP, Protection

P = TypeVar("P", bound=argparse.ArgumentParser)
#: Most batch sizes one ``--sizes`` list may name (a point is a few ms per repeat and mode at most).
MAX_SIZES = 200


def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    """Add ``bench`` and its measurements to the ``nic-sandbox`` sub-command set."""
    group = sub.add_parser(
        "bench",
        help="measure an idea of asynchronous I/O here: doorbell (what one costs, and what batching saves)",
        description="Measurements of the ideas the sandbox comes from (docs/async-io.md), on this machine.",
        epilog="example:\n  nic-sandbox bench doorbell --png out/doorbell.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    benches = group.add_subparsers(dest="bench", metavar="BENCH", title="benchmarks", prog=group.prog,
                                   parser_class=Parser)  # fmt: skip
    benches.required = True
    _add_doorbell(benches)


def _add_doorbell(sub: argparse._SubParsersAction[P]) -> None:
    modes = "; ".join(f"{m.value}: {PROTECTION_HELP[m]}" for m in Protection)
    p = sub.add_parser(
        "doorbell",
        help="the fixed cost of a doorbell and the cost per descriptor, per protection mode; the amortisation curve",
        description=_paragraphs(
            "What one doorbell costs, and what batching saves.  A kernel-bypass driver writes n descriptors "
            "into its ring, then makes one MMIO store, the doorbell (the ring's tail register, TDT).  Under "
            "verifier and unsafe-inplace that store traps into the kernel, which snapshots the n new "
            "descriptors, checks each against the tenant's pinned pages and posts them to the device; under "
            "none and iommu it goes straight to the device.  This command times that one store, many times, "
            "for batch sizes 1 ... --max-batch (log-spaced, two per doubling), in each protection mode.\n\n"
            "What is timed: the tail write for n new 64-byte TX descriptors, from the tenant's store until it "
            "returns.  The kernel's trap, snapshot, check and post are in it; writing the descriptors into the "
            "ring is not (that is the tenant's own memory).  The device's fetch and send are NOT in it by "
            "default: the transmitter is held off (TCTL.EN clear) while the clock runs, as a real NIC fetches "
            "after a posted write has returned, and sends untimed afterwards; --with-device times the tail "
            "write until the inline engine has also fetched, sent and completed the n frames.  Each point is "
            "the median of --repeats doorbells (rounds interleave modes and shuffle sizes, each timed "
            "doorbell follows an untimed one of the same size, the garbage collector is off while timing).\n\n"
            "Then per mode, cost(n) = a + b·n is fitted by least squares on relative error "
            "(numpy.linalg.lstsq): a is the fixed cost of one doorbell in ns, b the cost of each descriptor "
            "in ns, and a/b the batch at which the two are equal (below it a doorbell is mostly overhead).  "
            "The second table shows every point and the fit's residual there (measured - fitted, % of the "
            "point); 'fit RMS' is their root mean square.  The PNG (--png) is the amortisation curve: ns per "
            "descriptor against batch size, log-log, one line per mode, the fitted a/n + b over the "
            f"measured points.\n\nProtection modes: {modes}."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox bench doorbell --png out/doorbell.png     every mode, batches 1..4096 (a few seconds)\n"
            "  nic-sandbox bench doorbell --modes none,verifier --max-batch 1024 --repeats 101\n"
            "  nic-sandbox bench doorbell --sizes 1,16,256,4096 --with-device\n"
            "  nic-sandbox bench doorbell --seconds 5 --json > doorbell.json\n\n"
            "Numbers vary between machines and between runs on a shared one; the shape does not.\n"
            "Ctrl-C or SIGTERM stops early: what was measured is fitted, printed and drawn.\n"
            "exit codes: 0 done, 2 bad usage, 130/143 interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--modes",
        metavar="LIST",
        help=f"comma-separated protection modes to measure (default: all, {','.join(m.value for m in Protection)})",
    )
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--sizes", metavar="LIST", help=f"comma-separated batch sizes, each 1..{MAX_BATCH:,}")
    sizes.add_argument(
        "--max-batch",
        type=bounded_number(int, "--max-batch", 2, MAX_BATCH),
        default=DEFAULT_MAX_BATCH,
        help=f"largest batch: sizes 1 .. this, two per doubling (default {DEFAULT_MAX_BATCH:,})",
    )
    p.add_argument(
        "--repeats",
        type=bounded_number(int, "--repeats", 1, 100_000),
        default=DEFAULT_REPEATS,
        help=f"timed doorbells per mode and batch size; each point is their median (default {DEFAULT_REPEATS})",
    )
    p.add_argument(
        "--seconds",
        type=bounded_number(float, "--seconds", 0.01, 86_400),
        help="time budget: stop after this many seconds (the first round always completes) and fit what was "
        "measured (default: none, all --repeats)",
    )
    p.add_argument(
        "--with-device",
        action="store_true",
        help="time the device's fetch, send and completion too (doorbell to completion, inline engine)",
    )
    p.add_argument("--png", metavar="FILE", help="draw the amortisation curve into this PNG (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print everything measured as JSON instead of tables")
    p.set_defaults(func=cmd_doorbell)


def _paragraphs(text: str) -> str:
    """Wrap each paragraph of ``text`` to 100 columns (the epilog's examples keep their own lines)."""
    return "\n\n".join(textwrap.fill(paragraph, 100, break_on_hyphens=False) for paragraph in text.split("\n\n"))


def parse_modes(text: str | None) -> list[Protection]:
    """``--modes``: protection modes in the order given; unknown or repeated names are one-line errors."""
    if text is None:
        return list(Protection)
    names = [t.strip() for t in text.split(",")]
    known = {m.value: m for m in Protection}
    modes: list[Protection] = []
    for name in names:
        if name not in known:
            shown = name if len(name) <= MAX_NUMBER_TEXT else name[:20] + "..."
            raise UsageError(f"--modes: unknown protection mode {shown!r} (choose from {', '.join(known)})")
        if known[name] in modes:
            raise UsageError(f"--modes: {name} is named twice")
        modes.append(known[name])
    return modes


def parse_sizes(text: str | None, max_batch: int) -> list[int]:
    """``--sizes`` (distinct, sorted; two at least, each 1..MAX_BATCH) or the log-spaced set up to ``max_batch``."""
    if text is None:
        return log_spaced(max_batch)
    words = [t.strip() for t in text.split(",")]
    if len(words) > MAX_SIZES:
        raise UsageError(f"--sizes: at most {MAX_SIZES} batch sizes, got {len(words)}")
    convert = bounded_number(int, "--sizes: a batch size", 1, MAX_BATCH)
    try:
        sizes = sorted({int(convert(w)) for w in words})
    except argparse.ArgumentTypeError as err:
        raise UsageError(str(err)) from None
    if len(sizes) < 2:
        raise UsageError("--sizes: a line needs two different batch sizes at least")
    return sizes


def cmd_doorbell(args: argparse.Namespace, out: Console) -> int:
    modes = parse_modes(args.modes)
    sizes = parse_sizes(args.sizes, args.max_batch)
    png = None if args.png is None else check_output_path(args.png, "--png")
    if png is not None:
        require_matplotlib()
    with requested_stop() as stop:
        Console(stderr=True).print(
            f"bench doorbell: {len(modes)} mode(s) x {len(sizes)} batch sizes x {args.repeats} repeats; "
            "Ctrl-C stops early and keeps what was measured",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        result = sweep(modes, sizes, args.repeats, with_device=args.with_device, budget_s=args.seconds,
                       should_stop=lambda: stop.name)  # fmt: skip
    drawn = False
    if png is not None and any(m.fit() is not None for m in result.modes.values()):
        what = "doorbell to completion" if result.with_device else "the doorbell alone, device held"
        with writing(png, "--png"):
            doorbell_plot.draw(
                result, png, f"ns per descriptor against batch size: {what}; {doorbell_report.machine()}"
            )
        drawn = True
    if args.json:
        report = doorbell_report.as_json(result)
        report["png"] = str(png) if drawn else None
        print(json.dumps(report, indent=2))
    else:
        out.print(doorbell_report.what_is_timed(result), markup=False, highlight=False)
        out.print(doorbell_report.header(result), markup=False, highlight=False)
        out.print(doorbell_report.summary_table(result))
        out.print(doorbell_report.points_table(result))
        if png is not None:
            out.print(f"amortisation curve: {png}" if drawn else "no PNG: fewer than two batch sizes were measured",
                      markup=False, highlight=False)  # fmt: skip
    return stop.exit_code() if stop.requested() else 0

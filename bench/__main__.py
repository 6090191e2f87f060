"""``make bench``: print the measured figures and their ratios, all from this one run."""

from __future__ import annotations

import argparse
import platform

from rich.console import Console
from rich.table import Table

from bench import (
    audit_bench,
    audit_query_bench,
    datapath,
    doorbell,
    fuzz_bench,
    fuzz_memory,
    iommu_cost,
    qemu_rate,
    ray_bench,
    verifier_checks,
)
from bench.goals import GoalRow


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="nic-sandbox benchmarks")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement (default 1.5)")
    args = parser.parse_args()
    out = Console(width=120)
    out.print(f"nic-sandbox benchmarks on {platform.python_implementation()} {platform.python_version()}, one core")

    # 1. the data path at three batch sizes, protection none
    table = Table(title="datapath: 64-byte frames, alice -> nic0 -> cable -> nic1 -> bob, protection none")
    for col in ("batch", "frames", "seconds", "Mpps", "x batch 1", "x ixy.py (0.14 Mpps @32)"):
        table.add_column(col, justify="right")
    results = [datapath.measure(b, min_seconds=args.seconds, protection="none") for b in (1, 32, 256)]
    base = results[0].mpps
    for r in results:
        table.add_row(
            str(r.batch),
            f"{r.frames:,}",
            f"{r.seconds:.2f}",
            f"{r.mpps:.3f}",
            f"{r.mpps / base:.1f}",
            f"{r.mpps / datapath.IXY_PY_MPPS_BATCH32:.2f}",
        )
    out.print(table)
    best = results[-1].mpps
    out.print(f"batch 256: {best:.3f} Mpps, {'meets' if best >= 1.0 else 'misses'} the 1 Mpps floor")

    # 2. the verifier's checks alone, vectorised against the one-at-a-time reference
    table = Table(title="verifier checks: legacy TX descriptors per second (all valid, pinned buffers)")
    cols = ("batch", "vectorised M desc/s", "reference M desc/s", "vectorised / reference", "compiled path M desc/s")
    for col in cols:
        table.add_column(col, justify="right")
    checks = [verifier_checks.measure(b, min_seconds=args.seconds / 3) for b in (1, 32, 256, 4096)]
    for c in checks:
        compiled = "-" if c.compiled is None else f"{c.compiled / 1e6:.2f}"
        table.add_row(
            str(c.batch), f"{c.vectorised / 1e6:.2f}", f"{c.reference / 1e6:.3f}", f"{c.speedup:.1f}", compiled
        )
    out.print(table)
    at256 = next(c for c in checks if c.batch == 256).vectorised / 1e6
    out.print(f"batch 256: {at256:.1f} M desc/s, {'meets' if at256 >= 20 else 'misses'} the 20 M desc/s goal")

    # 3. what each protection mode costs the data path
    table = Table(title="datapath by protection mode: 64-byte frames, batch 256")
    for col in ("protection", "Mpps", "cost against none"):
        table.add_column(col, justify="right")
    modes = {m: datapath.measure(256, min_seconds=args.seconds, protection=m) for m in ("none", "verifier", "iommu")}
    none = modes["none"].mpps
    for mode, r in modes.items():
        table.add_row(mode, f"{r.mpps:.3f}", "-" if mode == "none" else f"{(1 - r.mpps / none) * 100:.1f}%")
    out.print(table)

    # 4. the fuzzer: malicious descriptors tried per second, judged by the oracle
    table = Table(
        title=(
            f"fuzzer: malicious descriptors tried per second, one core, oracle attached "
            f"(batch mode: the {len(fuzz_bench.BATCH_CLASSES)} one-doorbell classes, every one visited)"
        )
    )
    for col in ("protection", "mode", "classes run", "descriptors", "seconds", "desc/s", "escapes"):
        table.add_column(col, justify="right")
    rates = {
        (m, b): fuzz_bench.measure(m, b, seconds=2 * args.seconds, classes=list(fuzz_bench.BATCH_CLASSES))
        for m in ("none", "verifier", "iommu")
        for b in (1, 255)
    }
    for (mode, batch), fr in rates.items():
        label = "one at a time" if batch == 1 else f"batch {batch}"
        table.add_row(
            mode,
            label,
            f"{fr.visited}/{len(fuzz_bench.BATCH_CLASSES)}",
            f"{fr.descriptors:,}",
            f"{fr.seconds:.2f}",
            f"{fr.rate:,.0f}",
            f"{fr.escapes:,}",
        )
    out.print(table)
    for mode in ("verifier", "iommu"):
        rate = rates[(mode, 255)].rate
        verdict = "meets" if rate >= fuzz_bench.GOAL else "misses"
        out.print(f"fuzzer, {mode}, batch 255: {rate:,.0f} desc/s, {verdict} the {fuzz_bench.GOAL:,}/s goal")
    out.print(
        f"fuzzer, none, batch 255: {rates[('none', 255)].rate:,.0f} desc/s (no verifier to fire at: nearly every "
        "descriptor escapes, so the device really sends each frame and the oracle scans it; the goal is about the "
        "verifier's modes)"
    )
    every = fuzz_bench.measure("verifier", 255, seconds=2 * args.seconds, arena_every=8)
    out.print(
        f"fuzzer, verifier, every class (operation sequences too, each on a fresh machine): "
        f"{every.rate:,.0f} desc/s, {every.batch_rate:,.0f} attacks/s"
    )

    # 5. the fuzzer's budgets: memory of a long campaign, and the time limit including the audit log's end check
    table = Table(
        title=f"fuzzer budgets: peak resident memory (budget {fuzz_memory.BUDGET_MB} MB) and --seconds overrun"
    )
    for col in ("command", "wall s", "max RSS MB", "x budget"):
        table.add_column(col, justify="right")
    for jobs in (1, 2):
        run = fuzz_memory.memory(30.0, jobs)
        table.add_row(
            " ".join(run.argv),
            f"{run.seconds:.1f}",
            f"{run.max_rss_mb:.0f}",
            f"{run.max_rss_mb / fuzz_memory.BUDGET_MB:.2f}",
        )
    for n in (5.0, 30.0):
        run = fuzz_memory.run("--seconds", f"{n:g}")
        table.add_row(
            " ".join(run.argv),
            f"{run.seconds:.1f}",
            f"{run.max_rss_mb:.0f}",
            f"{run.max_rss_mb / fuzz_memory.BUDGET_MB:.2f}",
        )
        out.print(f"fuzz --seconds {n:g} (audit log, end check included): {run.seconds - n:+.1f} s beyond the budget")
    out.print(table)

    # 6. issue 12's goals, every row from this run
    rows: list[GoalRow] = []
    rows += datapath.goal_rows(args.seconds)
    rows += iommu_cost.goal_rows(args.seconds)
    rows += fuzz_bench.goal_rows(2 * args.seconds)
    rows += audit_bench.goal_rows(2 * args.seconds)
    rows += qemu_rate.goal_rows(2 * args.seconds)
    goal_table(out, rows, "issue 12 goals: each ratio measured in this run against a baseline from this run")

    # 7. issue 13's scale goal: Ray workers (none without the [ray] extra: one line on stderr says so)
    scale = ray_bench.goal_rows(2 * args.seconds)
    if scale:
        goal_table(out, scale, "issue 13 goals: fuzzing on a Ray cluster, measured in this run")

    # 8. issue 14: what a doorbell costs, per protection mode (cost(n) = a + b·n, docs/async-io.md section 1)
    doorbell.section(out, args.seconds)

    # 9. issue 15: SQL over the audit log (audit query and summary on a ~210k-record campaign log, docs/auditing.md)
    audit_query_bench.section(out, args.seconds)


def goal_table(out: Console, rows: list[GoalRow], title: str) -> None:
    """Every goal of an issue: the figure, its baseline from this run, the ratio, the goal, met or missed."""
    table = Table(title=title)
    for col in ("what", "figure", "baseline", "value", "goal", "verdict"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for row in rows:
        table.add_row(row.what, row.figure, row.baseline, row.show(row.value), f"{row.sense} {row.show(row.goal)}",
                      row.verdict)  # fmt: skip
    out.print(table)
    met = sum(row.met for row in rows)
    out.print(f"{met} of {len(rows)} goals met")


if __name__ == "__main__":
    main()

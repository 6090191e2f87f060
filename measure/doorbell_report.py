"""A doorbell sweep told three ways: the fit per mode, every point with its residual, and JSON.

Shared by ``nic-sandbox bench doorbell`` and ``make bench`` (bench/doorbell.py),
so the two print the same table from the same numbers.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from rich.table import Table

from measure.doorbell import Sweep

TIMED_PAUSED = (
    "timed: the tenant's tail write (TDT) for n new 64-byte TX descriptors, the kernel's trap, snapshot, check "
    "and post included; the device's fetch and send excluded (its transmitter is held off while the clock runs)"
)
TIMED_WITH_DEVICE = (
    "timed: the tenant's tail write (TDT) for n new 64-byte TX descriptors until it returns, which on the inline "
    "engine includes the kernel's trap, snapshot, check and post, the device's fetch, gather and send of n frames, "
    "its interrupt and the kernel's completion write-back"
)


def what_is_timed(sweep: Sweep) -> str:
    return TIMED_WITH_DEVICE if sweep.with_device else TIMED_PAUSED


def machine() -> str:
    """Where the numbers come from: CPUs and interpreter (a shared 2-core machine is not a quiet 16-core one)."""
    cpus = os.cpu_count() or 0
    return f"{cpus} CPU{'s' if cpus != 1 else ''}, {platform.python_implementation()} {platform.python_version()}"


def header(sweep: Sweep) -> str:
    path = "compiled fast paths" if sweep.compiled else "numpy paths (accelerators off)"
    end = "" if sweep.stopped is None else f"; stopped early ({sweep.stopped}), fitted on what was measured"
    return (
        f"{sweep.doorbells:,} timed doorbells in {sweep.seconds:.1f} s ({sweep.rounds} of {sweep.repeats} rounds), "
        f"median per point; {machine()}; {path}{end}"
    )


def summary_table(sweep: Sweep) -> Table:
    """One row per mode: a, b, a/b, how well the line fits, and the two ends of the curve."""
    table = Table(title="cost(n) = a + b·n per doorbell, least squares on relative error")
    for col in ("protection", "a: fixed ns", "b: ns/desc", "a/b: batch", "fit RMS", "ns/desc at n=1", "at n=max"):
        table.add_column(col, justify="left" if col == "protection" else "right")
    for mode, samples in sweep.modes.items():
        fit = samples.fit()
        if fit is None:
            table.add_row(mode.value, "-", "-", "-", "-", "-", "- (fewer than two batch sizes measured)")
            continue
        cross = fit.crossover
        first, last = samples.batches()[0], samples.batches()[-1]
        table.add_row(
            mode.value,
            f"{fit.a:,.0f}",
            f"{fit.b:,.2f}",
            "-" if cross is None else f"{cross:,.0f}",
            f"{fit.relative_rms:.1%}",
            _ns(samples.median(first) / first),
            f"{_ns(samples.median(last) / last)} (n={last:,})",
        )
    return table


def _ns(value: float) -> str:
    """Three significant figures or so: 15,239 / 66.3 / 2.68."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def points_table(sweep: Sweep) -> Table:
    """Every batch size: each mode's median doorbell (µs) and how far the line misses it (fit Δ, % of the point)."""
    table = Table(title="each point: median µs per doorbell, and the fit's residual (measured - fitted) in %")
    table.add_column("batch", justify="right")
    fits = {mode: samples.fit() for mode, samples in sweep.modes.items()}
    for mode in sweep.modes:
        table.add_column(f"{mode.value} µs", justify="right")
        table.add_column("fit Δ", justify="right")
    for n in sorted(sweep.sizes):
        row = [f"{n:,}"]
        for mode, samples in sweep.modes.items():
            if not samples.samples.get(n):
                row += ["-", "-"]
                continue
            fit = fits[mode]
            delta = "-"
            if fit is not None:
                delta = f"{float(fit.relative_residual[samples.batches().index(n)]):+.0%}"
            row += [f"{samples.median(n) / 1000:,.1f}", delta]
        table.add_row(*row)
    return table


def as_json(sweep: Sweep) -> dict[str, Any]:
    """Everything measured: settings, each mode's fit and every point with its samples' median and quartiles."""
    modes: dict[str, Any] = {}
    for mode, samples in sweep.modes.items():
        fit = samples.fit()
        points = []
        for i, n in enumerate(samples.batches()):
            q1, q3 = samples.quartiles(n)
            point: dict[str, Any] = {
                "batch": n,
                "samples": len(samples.samples[n]),
                "median_ns": samples.median(n),
                "p25_ns": q1,
                "p75_ns": q3,
                "ns_per_descriptor": samples.median(n) / n,
            }
            if fit is not None:
                point["fitted_ns"] = float(fit.fitted[i])
                point["residual_ns"] = float(fit.residual[i])
                point["residual_relative"] = float(fit.relative_residual[i])
            points.append(point)
        modes[mode.value] = {
            "a_ns": None if fit is None else fit.a,
            "b_ns": None if fit is None else fit.b,
            "a_over_b": None if fit is None else fit.crossover,
            "relative_rms": None if fit is None else fit.relative_rms,
            "points": points,
        }
    return {
        "timed": what_is_timed(sweep),
        "with_device": sweep.with_device,
        "compiled": sweep.compiled,
        "machine": machine(),
        "sizes": sorted(sweep.sizes),
        "repeats": sweep.repeats,
        "rounds": sweep.rounds,
        "doorbells": sweep.doorbells,
        "seconds": sweep.seconds,
        "stopped": sweep.stopped,
        "model": "cost(n) = a + b*n, least squares on relative error (numpy.linalg.lstsq, rows divided by cost)",
        "modes": modes,
    }

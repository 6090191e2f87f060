"""The PNG of ``nic-sandbox audit bench``: durability latency, model against measurement, and the fsync times.

Left: latency (ms, log scale) against the group size N (log scale), one
colour per arrival rate; lines are the model (solid: mean, dashed: p99;
none where the disk is saturated, load >= 1), markers the measurement
(dots: mean, crosses: p99).  Right: the fsync
times measured on this disk, one cumulative distribution per group size.
Needs matplotlib (the ``plot`` extra); the caller checks it is there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from measure.durability import FsyncTimes, Prediction
from measure.durability_disk import Measured

__all__ = ["plot"]


def plot(path: Path, pairs: Sequence[tuple[Prediction, Measured]], fsync: FsyncTimes, title: str) -> None:
    """Draw model and measurement of every setting, and the fsync distributions, into the PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100)
    rates = sorted({p.rate for p, _ in pairs})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, rate in enumerate(rates):
        colour = colours[i % len(colours)]
        rows = sorted(((p, m) for p, m in pairs if p.rate == rate), key=lambda pm: pm[0].records)
        n = [p.records for p, _ in rows]
        ok = [p.load < 1 for p, _ in rows]  # a saturated disk: the model says nothing there (no point drawn)
        mean = [p.mean_s * 1e3 if fine else math.nan for (p, _), fine in zip(rows, ok, strict=True)]
        p99 = [p.p99_s * 1e3 if fine else math.nan for (p, _), fine in zip(rows, ok, strict=True)]
        left.plot(n, mean, "-", color=colour, label=f"{rate:g} records/s: model mean")
        left.plot(n, p99, "--", color=colour, alpha=0.6, label="model p99")
        measured = [(p.records, m) for p, m in rows if m.records]
        xs = [x for x, _ in measured]
        left.plot(
            xs, [float(np.mean(m.latencies_s)) * 1e3 for _, m in measured], "o", color=colour, label="measured mean"
        )
        left.plot(
            xs,
            [float(np.percentile(m.latencies_s, 99)) * 1e3 for _, m in measured],
            "x",
            color=colour,
            label="measured p99",
        )
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.set_xlabel("group size N (records per fsync, at most)")
    left.set_ylabel("durability latency (ms): written -> fsync returned")
    left.set_title("model (lines) against measurement (markers)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, ncol=2)
    for size in sorted(fsync):
        times = np.sort(fsync[size]) * 1e3
        right.step(times, np.arange(1, times.size + 1) / times.size, where="post", label=f"{size} records")
    right.set_xscale("log")
    right.set_xlabel("write + fsync of one group (ms)")
    right.set_ylabel("fraction of fsyncs at most this long")
    right.set_title("fsync times on this disk")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""The amortisation curve as a PNG: nanoseconds per descriptor against batch size, log-log, one line per mode.

Each mode's points are its medians divided by the batch (what one
descriptor cost, its share of the doorbell included) with the quartiles as
error bars; its line is the fitted model ``a/n + b``.  On log-log axes the
model is a straight line of slope -1 while ``a/n`` dominates (doubling the
batch halves the cost per descriptor) and bends flat at ``b`` once the
batch passes ``a/b``, the crossover marked on each line: past it, a bigger
batch buys little.  matplotlib is the ``plot`` extra, imported only here and
only when a PNG is drawn (Agg backend: no display needed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from measure.doorbell import Sweep


def available() -> bool:
    """Whether matplotlib can be imported (the ``plot`` extra is installed)."""
    return importlib.util.find_spec("matplotlib") is not None


def draw(sweep: Sweep, path: Path, title: str) -> None:
    """Write the curve of every mode of ``sweep`` with at least two batch sizes measured to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    try:
        for i, (mode, samples) in enumerate(sweep.modes.items()):
            fit = samples.fit()
            if fit is None:
                continue
            color = f"C{i}"
            n = fit.batch
            quartiles = np.array([samples.quartiles(int(b)) for b in n])
            y = fit.cost / n
            below, above = y - quartiles[:, 0] / n, quartiles[:, 1] / n - y
            ax.errorbar(n, y, yerr=(np.maximum(below, 0), np.maximum(above, 0)), fmt="o", ms=4, color=color,
                        capsize=2, label=f"{mode.value}: measured (median, quartiles)")  # fmt: skip
            smooth = np.geomspace(n.min(), n.max(), 200)
            cross = fit.crossover
            where = "" if cross is None else f", a/b = {cross:,.0f}"
            ax.plot(smooth, fit.per_descriptor(smooth), "-", color=color,
                    label=f"{mode.value}: a/n + b, a = {fit.a / 1000:,.1f} µs, b = {fit.b:,.1f} ns{where}")  # fmt: skip
            if cross is not None and n.min() <= cross <= n.max():
                ax.plot([cross], [fit.per_descriptor(np.array([cross]))[0]], "D", color=color, ms=7, mfc="none")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size n (new descriptors per doorbell)")
        ax.set_ylabel("ns per descriptor (doorbell cost / n)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)

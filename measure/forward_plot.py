"""Ring occupancy against virtual time, one panel per run: where the frames wait, and where they are lost.

Draws with matplotlib's Agg back end (the ``plot`` extra); the caller checks
that matplotlib is importable before asking.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from measure.forward import ForwardReport

#: The occupancy columns drawn, and their labels.
SERIES = (
    ("rx_ring", "forwarder RX ring (waiting to be taken)"),
    ("tx_ring", "forwarder TX ring (held by PAUSE)"),
    ("consumer_ring", "consumer RX ring"),
    ("held", "held by the forwarder (tx_burst shortfall)"),
)


#: The drop columns drawn (cumulative, on the second axis): where each frame was lost.
DROPS = (
    ("dropped_hop1", "dropped at hop 1 (MPC)", "tab:red"),
    ("dropped_forwarder", "dropped by the forwarder (ring-full)", "tab:purple"),
    ("dropped_hop2", "dropped at hop 2 (MPC)", "black"),
)


def title(report: ForwardReport) -> str:
    pause = "PAUSE on" if report.pause else "no PAUSE"
    return f"{report.policy.value} ({pause})"


def plot(reports: Sequence[ForwardReport], path: str | Path) -> None:
    """One panel per run, occupancy (frames) against virtual ms, and the cumulative drops on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(reports), 1, figsize=(12, 3.4 * len(reports)), sharex=True, squeeze=False)
    for ax, report in zip(axes[:, 0], reports, strict=True):
        t_ms = report.column("t_ns") / 1e6
        for name, label in SERIES:
            ax.plot(t_ms, report.column(name), label=label, linewidth=1.2)
        ax.set_ylabel("frames")
        ax.set_title(
            f"{title(report)}: source {report.rate:,.0f}/s, consumer {report.consumer_rate:,.0f}/s, "
            f"forwarded {report.settled_rate():,.0f}/s",
            fontsize=10,
        )
        twin = ax.twinx()
        for name, label, color in DROPS:
            twin.plot(t_ms, report.column(name).cumsum(), color=color, linestyle=":", linewidth=1.6, label=label)
        twin.set_ylabel("frames dropped (cumulative)")
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.08, 1.0))
    axes[-1, 0].set_xlabel("virtual time (ms)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # missing folders are made, as the other writers do
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``make bench``'s doorbell section: the fixed cost of a doorbell and the cost per descriptor, per protection mode.

The same sweep and tables as ``nic-sandbox bench doorbell`` (measure/doorbell.py,
docs/async-io.md section 1): every mode, batch sizes 1 … 4096, the median of
the default repeats per point, ``cost(n) = a + b·n`` fitted per mode; the
amortisation curve is drawn to ``out/bench/doorbell.png`` when matplotlib is
installed.  ``python -m bench.doorbell`` prints the section alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from measure import doorbell_plot, doorbell_report
from measure.doorbell import DEFAULT_MAX_BATCH, DEFAULT_REPEATS, sweep
from measure.linear_fit import log_spaced
from verifier.modes.protection import Protection

PNG = Path("out/bench/doorbell.png")


def section(out: Console, seconds: float) -> None:
    """Measure and print the doorbell's a and b per mode (at most ``10 * seconds`` of measuring, one round at least)."""
    result = sweep(list(Protection), log_spaced(DEFAULT_MAX_BATCH), DEFAULT_REPEATS, budget_s=10 * seconds)
    out.print(doorbell_report.what_is_timed(result), markup=False, highlight=False)
    out.print(doorbell_report.header(result), markup=False, highlight=False)
    out.print(doorbell_report.summary_table(result))
    if doorbell_plot.available():
        doorbell_plot.draw(result, PNG, f"ns per descriptor against batch size; {doorbell_report.machine()}")
        out.print(f"amortisation curve: {PNG}", markup=False, highlight=False)
    else:
        out.print("amortisation curve not drawn: matplotlib is not installed (the plot extra)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.doorbell", description="what a doorbell costs, per mode")
    parser.add_argument("--seconds", type=float, default=1.5, help="a tenth of the measuring budget (default 1.5)")
    args = parser.parse_args()
    section(Console(width=120), args.seconds)


if __name__ == "__main__":
    main()

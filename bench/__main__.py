"""``make bench``: print the measured figures and their ratios, all from this one run."""

from __future__ import annotations

import argparse
import platform

from rich.console import Console
from rich.table import Table

from bench import datapath


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="nic-sandbox benchmarks")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement (default 1.5)")
    args = parser.parse_args()
    out = Console(width=120)
    out.print(f"nic-sandbox benchmarks on {platform.python_implementation()} {platform.python_version()}, one core")

    table = Table(title="datapath: 64-byte frames, alice -> nic0 -> cable -> nic1 -> bob, protection none")
    for col in ("batch", "frames", "seconds", "Mpps", "x batch 1", "x ixy.py (0.14 Mpps @32)"):
        table.add_column(col, justify="right")
    results = [datapath.measure(b, min_seconds=args.seconds) for b in (1, 32, 256)]
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
    verdict = "meets" if best >= 1.0 else "misses"
    out.print(f"batch 256: {best:.3f} Mpps, {verdict} the 1 Mpps floor")


if __name__ == "__main__":
    main()

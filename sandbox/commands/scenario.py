"""``nic-sandbox scenario [NAME]``: print an embedded scenario (TOML, commented) to copy and edit."""

from __future__ import annotations

import argparse
import sys
from typing import TypeVar

from rich.console import Console

from world import scenario

P = TypeVar("P", bound=argparse.ArgumentParser)


def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    """Add ``scenario`` to the ``nic-sandbox`` sub-command set."""
    show = sub.add_parser(
        "scenario",
        help="print an embedded scenario (TOML) to copy and edit",
        description="Print an embedded scenario, with comments explaining every key.",
        epilog="example: nic-sandbox scenario attack > my-attack.toml",
    )
    names = ["pingpong", "attack", "ping", "forward"]
    show.add_argument("name", nargs="?", default="pingpong", choices=names, help="which one")
    show.set_defaults(func=cmd_scenario)


def cmd_scenario(args: argparse.Namespace, out: Console) -> int:
    sys.stdout.write(scenario.default_text(args.name))
    return 0

"""``nic-sandbox demo [KIND]``: one sub-command per demo, each with only the flags that apply to it.

KIND is pingpong (the default), attack, ping, afxdp or forward; a flag of another kind
is refused by argparse itself, in one line (``demo attack --count 5``).
"""

from __future__ import annotations

import argparse
from typing import TypeVar

from sandbox.commands import afxdp, attack, forward, ping, pingpong
from sandbox.parser import Parser

P = TypeVar("P", bound=argparse.ArgumentParser)
KINDS = (pingpong, attack, ping, afxdp, forward)


def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    """Add ``demo`` and its kinds to the ``nic-sandbox`` sub-command set."""
    names = [kind.NAME for kind in KINDS]
    demo = sub.add_parser(
        "demo",
        help=f"run a demo: {pingpong.NAME} (default), {', '.join(names[1:-1])} or {names[-1]}",
        usage=f"%(prog)s [{{{','.join(names)}}}] [flags of that demo]",
        description="\n\n".join(
            [
                *(kind.DESCRIPTION for kind in KINDS),
                "Each demo takes only its own flags: 'nic-sandbox demo KIND --help' lists them.",
            ]
        ),
        epilog="examples:\n" + "\n".join(kind.EXAMPLES for kind in KINDS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        default_command=pingpong.NAME,
    )
    # prog: the kinds are "nic-sandbox demo KIND", not named after the usage line above
    kinds = demo.add_subparsers(dest="demo", metavar="KIND", title="demos", prog=demo.prog, parser_class=Parser)
    kinds.required = True
    for kind in KINDS:
        kind.add_parser(kinds)

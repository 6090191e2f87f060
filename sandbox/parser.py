"""The argparse parser every ``nic-sandbox`` command is built from.

Three things argparse does not do by itself:

- errors are :class:`~sandbox.errors.UsageError` (one line, exit 2), naming
  the ``--help`` of the command that refused them, not the whole program's;
- a command that ends in flags refuses what it does not know itself, so a flag
  given to the wrong demo (``demo attack --count 5``) is refused by the demo's
  own parser, with that demo's ``--help`` in the message;
- a command group may have a default command (``demo`` is ``demo pingpong``,
  ``fuzz`` is ``fuzz campaign``), as ``git stash`` is ``git stash push``: when
  the first word after the group is a flag or nothing, the default is meant.
  ``--help`` on the group shows the default command's flags too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from sandbox.errors import UsageError

HELP_FLAGS = ("-h", "--help")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with one-line errors and an optional default sub-command."""

    def __init__(self, *args: Any, default_command: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def commands(self) -> dict[str, argparse.ArgumentParser]:
        """This parser's sub-commands by name (none for a command that ends in flags)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        if self.default_command is not None and self._names_no_command(words):
            words.insert(0, self.default_command)
        parsed, extras = super().parse_known_args(words, namespace)
        if extras and not self.commands():  # a leaf: nothing below it could know these words
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    @staticmethod
    def _names_no_command(words: list[str]) -> bool:
        """Nothing, or a flag first: the default command is meant (``-h`` alone asks for the group's help)."""
        return not words or (words[0].startswith("-") and words[0] not in HELP_FLAGS)

    def format_help(self) -> str:
        """argparse's help, plus the default command's flags after this group's own sections."""
        default = self.commands().get(self.default_command or "")
        if default is None:
            return super().format_help()
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        sections = [(group.title, group._group_actions) for group in self._action_groups]
        for group in default._action_groups:  # its -h is not ours: ours is listed above
            shown = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
            sections.append((f"{group.title} of '{default.prog}', the default", shown))
        for title, actions in sections:
            if not actions:
                continue
            formatter.start_section(title)
            formatter.add_arguments(actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()

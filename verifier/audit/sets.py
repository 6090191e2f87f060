"""A set of audit logs: each worker of a parallel campaign writes its own hash chain.

``nic-sandbox fuzz --jobs N`` and ``--ray`` give every worker its own log
(``PATH.job0``, ``PATH.job1``, ``PATH.job1-retry1`` ...): separate chains,
each starting at seq 0 (a kernel per worker, as each machine of a fleet
keeps its own journal).  Verified as one chain they would look like one log
with every record repeated, so ``log_sets`` tells them apart: names whose
files (each with its rotated siblings, verifier/audit/log.py) start two or
more chains at seq 0 are separate logs, verified one by one; anything else
is one log's files in any order, as before.  A directory names every log
in it (not the rotated files, lock files or prune markers beside them, nor
files that are not audit logs: a campaign's report.json lives there too).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from verifier.audit.log import PRUNED_SUFFIX, rotated_siblings
from verifier.audit.read import AuditFormatError, PathLike, _first_seq, log_files, order_files, sniff


def logs_in(directory: Path) -> list[Path]:
    """The logs of a directory: audit log files that are not a rotated sibling, a lock file or a marker."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    rotated = {sibling for p in files for _, sibling in rotated_siblings(p)}
    out = []
    for p in files:
        if p in rotated or p.name.endswith((PRUNED_SUFFIX, ".tmp")) or p.stat().st_size == 0:
            continue
        try:
            sniff(p)
        except AuditFormatError:
            continue
        out.append(p)
    return out


def log_sets(names: Iterable[PathLike]) -> list[list[Path]]:
    """The named logs as separate chains when they are (see the module docstring), else one list of files.

    Raises ``FileNotFoundError`` for a name that matches nothing or a directory holding no log.
    """
    named: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = logs_in(path)
            if not found:
                raise FileNotFoundError(
                    f"{name}: a directory holding no audit log (not an audit log, nor a set of them)"
                )
            named += found
        else:
            named.append(path)
    groups: list[list[Path]] = []
    seen: set[Path] = set()
    for path in named:
        group = [p for p in log_files([path]) if p.resolve() not in seen]
        seen.update(p.resolve() for p in group)
        if group:
            groups.append(group)
    starts = sum(1 for g in groups if _starts_at_zero(g))
    if len(groups) > 1 and starts >= 2:
        return groups
    return [[p for g in groups for p in g]]


def _starts_at_zero(group: list[Path]) -> bool:
    return _first_seq(order_files(group)[0]) == 0

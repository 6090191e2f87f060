"""The optional libraries of the auditor's tools, imported on demand with one message when missing.

DuckDB (SQL over the log, Parquet out) and pyarrow (the rows of a query
streamed to the output as Arrow batches) are not needed by the kernel, the
fuzzer or any other command, so they are an extra (``pip install
'nic-sandbox[audit]'``), as matplotlib is for ``audit plot``.  A command that
needs one and does not find it says so in one line instead of a traceback.
"""

from __future__ import annotations

from types import ModuleType

#: What to install when a library of the ``audit`` extra is missing.
EXTRA_HINT = "pip install 'nic-sandbox[audit]'"


class MissingLibrary(Exception):
    """A library of the ``audit`` extra is not installed (the message names the extra)."""


def duckdb() -> ModuleType:
    """The ``duckdb`` module, or ``MissingLibrary`` naming the extra."""
    try:
        import duckdb as module
    except ImportError:
        raise MissingLibrary(f"this needs DuckDB, which is not installed ({EXTRA_HINT})") from None
    return module


def pyarrow() -> ModuleType:
    """The ``pyarrow`` module (DuckDB hands query results over as Arrow batches), or ``MissingLibrary``."""
    try:
        import pyarrow as module  # type: ignore[import-untyped]
    except ImportError:
        raise MissingLibrary(f"this needs pyarrow, which is not installed ({EXTRA_HINT})") from None
    return module

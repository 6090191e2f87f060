"""The auditor's tools over the kernel's audit trail: SQL, exports, and a local web view (issue 15).

The kernel writes the log (verifier/audit/); these read it, never write it.
They sit beside the fuzzer and the measurements, above the world: the command
line imports them, never the reverse.  Each leans on a well-kept library of
the field rather than a hand-written engine: DuckDB for SQL and Parquet,
a small ASGI framework for the web view.
"""

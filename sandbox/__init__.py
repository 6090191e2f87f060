"""The user: the ``nic-sandbox`` command line (``cli.py``, ``commands/``) and the demos (``demos/``).

Nothing else imports this package; it imports everything else.  Inside, imports
go one way: ``cli.py`` assembles ``commands/`` (one module per command, each
with its ``add_parser``), which use ``demos/`` and the shared ``errors.py``
(one-line errors, exit 2), ``argtypes.py``, ``parser.py`` and ``flags.py``;
nothing imports back up (tests/sandbox/test_cli_imports.py).
"""

"""The user: the ``nic-sandbox`` command line (``cli.py``, ``commands/``) and the demos (``demos/``).

Nothing else imports this package; it imports everything else.
"""

"""The world: composition root and the ``nic-sandbox`` command line.

Nothing else imports this package; it imports everything else.
"""

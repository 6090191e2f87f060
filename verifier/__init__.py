"""The kernel: address spaces, queue ownership, the doorbell window and (later) the verifier.

This package never imports ``driver/``: it reaches NICs only through their
register bus, as a real kernel reaches a PCI device through its BAR.
"""

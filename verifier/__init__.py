"""The kernel: address spaces, pins, queue ownership, the doorbell trap; the rules, the modes, the audit log.

This package never imports ``device/`` nor ``driver/`` (an import contract
holds it): it reaches NICs only through their register bus, as a real
kernel reaches a PCI device through its BAR.
"""

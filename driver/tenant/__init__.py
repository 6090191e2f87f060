"""The tenant's user-space driver: TX/RX queues and a mempool over e1000 legacy rings (what ixy is).

It imports only ``ring/``: it talks to the kernel through the system calls
of ``ring/syscalls.py`` and to the NIC only through its doorbell window.
"""

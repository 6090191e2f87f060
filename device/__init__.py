"""The emulated NIC: an Intel 8254x-class (e1000) device, its single DMA engine, wires, pcap and clocks.

The device side of the machine.  It imports only ``ring/`` (the ABI it
shares with tenants and kernel); the kernel reaches it only through its
register file, and tenants only through the kernel's doorbell window.
"""

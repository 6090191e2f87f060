"""User-space drivers: the tenant's side of every NIC the sandbox drives.

- ``driver/tenant/``: the tenant's burst API over legacy e1000 rings (TX and
  RX queues, mempool): the part ixy and DPDK's PMDs are.  It drives the
  emulated NIC, QEMU's e1000 and a real 82574L under VFIO alike;
- one package per real back end: ``afxdp/`` (Linux AF_XDP sockets),
  ``qemu/`` (QEMU's e1000 over qtest), ``tap/`` (a Linux TAP device),
  ``vfio/`` (vfio-pci, with or without an IOMMU), ``verbs/`` (RDMA verbs
  over soft-RoCE).
"""

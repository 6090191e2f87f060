"""VFIO: a real PCI NIC (QEMU's 82574L in the lab VM) under vfio-pci, with and without an IOMMU."""

"""The kernel's side of virtio NICs: bring-up over virtio-mmio, the virtqueues it opens, and their doorbell."""

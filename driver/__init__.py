"""The NIC: an emulated e1000-class device, its DMA engine, wires, and real back ends."""

"""AF_XDP: real kernel rings (UMEM, fill, completion, RX, TX) on a veth pair, and the kernel's verdicts."""

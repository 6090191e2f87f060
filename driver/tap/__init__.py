"""A Linux TAP device as the far end of an emulated NIC's cable: the Linux stack on the other side."""

"""The protection modes: who stands between a tenant's descriptors and the device (one object each)."""

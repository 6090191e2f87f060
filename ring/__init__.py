"""The shared ABI between tenant, kernel and device.

Everything that two actors must agree on lives here and nowhere else:
physical memory and its frames, descriptor formats, the register map, ring
index arithmetic and the user-space ring API.  This package imports nothing
else of the project, so every other actor can depend on it.
"""

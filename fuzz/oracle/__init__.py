"""The independent oracle: judges every DMA, wire and audit record from its own ground truth.

It imports nothing it judges: only ``ring/`` (the ABI) and itself.  An
oracle that shares code with the verifier cannot see that code's bugs.
"""

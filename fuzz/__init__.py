"""The attacker: malicious descriptor generators, the independent oracle, campaigns, reproducers.

Nothing here imports the verifier's checks: the oracle judges from ground
truth (frame owners, canaries, the DMA it observes) so that it can see the
verifier's bugs.  See docs/fuzzing.md.
"""

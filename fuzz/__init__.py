"""The attacker: malicious descriptor generators, the independent oracle, campaigns.

Only the package exists so far; the fuzzer is built on top of the verifier.
"""

"""The world: scenarios and the one builder that wires memory, kernel, NICs, cables and tenants.

The composition root.  It sits below ``fuzz/`` (the fuzzer's arena is a
scenario, built) and below ``sandbox/`` (the command line and demos), and
above the actors it connects: ``ring/``, ``driver/``, ``device/`` and
``verifier/``.
"""

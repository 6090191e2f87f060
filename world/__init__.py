"""The world: scenarios and the one builder that wires memory, kernel, NICs, cables and tenants.

The composition root.  It sits below ``fuzz/`` (the fuzzer's arena is a
scenario, built) and below ``sandbox/`` (the command line and demos), and
above the actors it connects: ``ring/``, ``driver/``, ``device/`` and
``verifier/``.  ``build.World.assemble`` is the one builder; a kind of NIC
plugs into it as a ``backend.Backend``: ``emulated.Emulated`` (the
emulated e1000), ``qemu.Qemu`` (QEMU's e1000 over qtest) and the lab's
``Vfio`` (lab/guest/world.py).
"""

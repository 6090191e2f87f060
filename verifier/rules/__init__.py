"""The rules the kernel applies to descriptors, one module per format, and the limits (policy) they read.

- ``checks.py``: e1000 legacy TX/RX descriptors and packets, vectorised
  over a doorbell's batch; ``fastpath.h``/``fastpath.c``: the same rules
  compiled, for all-valid batches (built by ``ring/cbuild.py`` when the
  package is installed, loaded and checked by ``fastpath.py``);
- ``xdp.py``: Linux AF_XDP TX descriptors; ``verbs.py``: RDMA work requests;
- ``reasons.py``: every reason code a rule can give, ``policy.py``: limits.
"""

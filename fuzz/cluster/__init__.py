"""``nic-sandbox fuzz --ray``: a campaign whose workers are Ray actors, on one machine or a cluster.

Ray is an optional extra (``pip install 'nic-sandbox[ray]'``): nothing
outside this package imports it, and this package imports it only when a
Ray campaign starts (``connect.py``).  One file per job:

- ``plan.py``: what every worker is told (picklable, shipped once per actor);
- ``connect.py``: import Ray, start a local cluster or join one, shut down what was started;
- ``worker.py``: the worker actor -- an arena, an audit log and a disjoint block sequence;
- ``corpus.py``: the corpus actor -- findings, coverage-kept inputs and finished blocks, shared;
- ``faults.py``: which blocks a dead worker left unfinished, and the retry record;
- ``driver.py``: start the actors, stream progress, replace the dead, merge one report.
"""

"""Import Ray and reach a cluster: start a local one (``auto``) or join one started with ``ray start``.

Ray is imported here and only here, when a Ray campaign starts, so the
rest of the project runs without it.  ``auto`` starts a fresh local
cluster (``ray.init(address="local")``: never an unrelated cluster found
on the machine) with the dashboard off, and shuts it down afterwards; an
address (``HOST:PORT`` of the head's GCS, as ``ray start --head`` prints
it) joins that cluster and only disconnects.  Workers import the project
from the same place the driver does: for a local cluster the driver's
project root is put on their ``PYTHONPATH``; the nodes of a real cluster
need the project installed (``pip install 'nic-sandbox[ray]'``, same
version) -- only pickled plans, batches and results travel.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = str(Path(__file__).resolve().parents[2])
#: The CLI's word for "start a local cluster for this campaign".
AUTO = "auto"


class RayMissing(RuntimeError):
    """Ray is not installed: the one line to print."""


def import_ray() -> ModuleType:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise RayMissing("--ray needs Ray: pip install 'nic-sandbox[ray]' (or pip install 'ray>=2.9')") from None


def reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``HOST:PORT`` nothing listens on (``ray.init`` would retry for minutes): ConnectionError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # not HOST:PORT (a ray:// client address, say): let Ray judge it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(err.strerror or str(err)) from None


def _handlers() -> dict[int, Any]:
    """The current SIGINT and SIGTERM handlers (only the main thread can have and set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


@contextmanager
def cluster(address: str = AUTO, cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, initialised against ``address``; a cluster started here is shut down on the way out."""
    ray = import_ray()
    saved = _handlers()
    if address == AUTO:
        # the local raylet inherits the driver's environment and its workers the raylet's (no runtime_env: that
        # needs ray[default]'s agent)
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, before) if p)
        try:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        finally:
            if before is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = before
    else:
        reachable(address)
        ray.init(address=address, log_to_driver=False)
    for signum, handler in saved.items():  # ray.init makes SIGTERM exit at once: the campaign's own stop wins
        signal.signal(signum, handler)
    try:
        yield ray
    finally:
        ray.shutdown()

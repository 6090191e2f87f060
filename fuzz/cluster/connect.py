"""Import Ray and reach a cluster: start a local one (``auto``) or join one started with ``ray start``.

Ray is imported here and only here, when a Ray campaign starts, so the
rest of the project runs without it.  ``auto`` starts a fresh local
cluster (``ray.init(address="local")``: never an unrelated cluster found
on the machine) with the dashboard off, and shuts it down afterwards; an
address (``HOST:PORT`` of the head's GCS, as ``ray start --head`` prints
it) joins that cluster and only disconnects.

Ray 2.60 binds its servers to every interface whatever node address it is
given, so a local cluster is started inside a private network namespace
holding only ``lo`` (``netns.private_network``): nothing outside can
reach it and it has no route out.  That needs root; without it the
cluster runs on the host's network and ``notice`` gets one line saying
so.  A cluster at an address is left as its owner started it.  Workers import the project
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
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from fuzz.cluster.leftovers import descendants, wait_gone
from fuzz.cluster.netns import NoPrivateNetwork, private_network

ROOT = str(Path(__file__).resolve().parents[2])
#: The CLI's word for "start a local cluster for this campaign".
AUTO = "auto"
#: Where the nodes of a local cluster say they are (inside the private namespace there is nothing else).
LOOPBACK = "127.0.0.1"


class RayMissing(RuntimeError):
    """Ray is not installed: the one line to print."""


def import_ray() -> ModuleType:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise RayMissing("--ray needs Ray: pip install 'nic-sandbox[ray]' (or pip install 'ray>=2.9')") from None


def gcs_address(address: str) -> tuple[str, int] | None:
    """The (host, port) of a ``HOST:PORT`` address, None for a ``ray://`` client address (Ray judges it).

    Anything else is a ValueError with the line to print: Ray's own parser would raise it as a traceback.
    """
    if address.startswith("ray://"):
        return None
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("not an address: give auto, HOST:PORT (the head's GCS) or ray://HOST:PORT")
    return host, int(port)


def reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``HOST:PORT`` nothing listens on (``ray.init`` would retry for minutes): ConnectionError."""
    gcs = gcs_address(address)
    if gcs is None:
        return
    try:
        socket.create_connection(gcs, timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(err.strerror or str(err)) from None


def _handlers() -> dict[int, Any]:
    """The current SIGINT and SIGTERM handlers (only the main thread can have and set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def warn(line: str) -> None:
    """The default ``notice``: one line on stderr."""
    print(f"nic-sandbox: warning: {line}", file=sys.stderr, flush=True)


def confine(stack: ExitStack, notice: Callable[[str], None]) -> bool:
    """Enter a private network namespace for the rest of ``stack``; if that cannot be done, ``notice`` why."""
    try:
        stack.enter_context(private_network())
    except NoPrivateNetwork as err:
        notice(f"the local Ray cluster listens on all interfaces of this machine: {err.strerror}")
        return False
    return True


@contextmanager
def cluster(address: str = AUTO, cpus: int | None = None, notice: Callable[[str], None] = warn) -> Iterator[ModuleType]:
    """Ray, initialised against ``address``; a cluster started here (in a private network namespace when
    root) is shut down on the way out.  Start at most one local cluster per process (netns.py says why)."""
    ray = import_ray()
    with ExitStack() as stack:
        if address == AUTO:
            confine(stack, notice)
        with _initialised(ray, address, cpus, notice):
            yield ray


@contextmanager
def _initialised(ray: ModuleType, address: str, cpus: int | None, notice: Callable[[str], None]) -> Iterator[None]:
    saved = _handlers()
    ours = descendants()  # what ran below this process before the cluster: not the cluster's to wait for
    if address == AUTO:
        # the local raylet inherits the driver's environment and its workers the raylet's (no runtime_env: that
        # needs ray[default]'s agent)
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, before) if p)
        try:
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address=LOOPBACK,
            )
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
        yield
    finally:
        started = {p: t for p, t in descendants().items() if ours.get(p) != t} if address == AUTO else {}
        ray.shutdown()
        left = wait_gone(started)  # ray.shutdown() signals the local cluster and does not wait (leftovers.py)
        if left:
            notice(f"{len(left)} process(es) of the local Ray cluster survived SIGKILL: pids {sorted(left)}")

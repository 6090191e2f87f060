"""``private_network()``: a fresh namespace with only ``lo``, up, no route out; the thread is put back after."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from fuzz.cluster.netns import namespace_id, private_network
from tests.needs import need_root


def test_private_network_has_only_loopback_and_the_thread_comes_back() -> None:
    need_root("unshare(CLONE_NEWNET)")
    home = namespace_id()
    with private_network() as inside:
        assert inside == namespace_id() != home
        devices = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
        assert [d.split(":")[0].strip() for d in devices] == ["lo"]
        with socket.socket() as server:  # bound to every interface, reached over lo
            server.bind(("0.0.0.0", 0))
            server.listen()
            socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=5).close()
        with pytest.raises(OSError) as out, socket.socket() as client:  # no route out
            client.connect(("192.0.2.1", 9))
        assert out.value.errno == errno.ENETUNREACH
    assert namespace_id() == home

"""Network namespaces the project creates are gone afterwards: normally, on an exception, on SIGTERM, after SIGKILL.

Also the veth namespace the AF_XDP code uses: private (nothing in the root
namespace, no route out), a thread can step in and out, and a packet socket on
one end sees what the other end sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from driver import netns
from driver.netns import (
    NetNamespace,
    NetnsError,
    VethNamespace,
    link_exists,
    namespace_exists,
    process_alive,
    received_frames,
)
from tests.needs import need_root, need_tool

pytestmark = pytest.mark.privileged


@pytest.fixture(autouse=True)
def _privileges() -> None:
    need_root("creating network namespaces")
    need_tool("ip", "iproute2")


def _thread_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_namespace_has_lo_up_and_no_route_out() -> None:
    with NetNamespace("test") as ns:
        assert namespace_exists(ns.name)
        assert ns.name.startswith(f"nicsb-test-{os.getpid()}-")
        assert ns.links() == ["lo"]
        assert "UP" in ns.ip("-o", "link", "show", "dev", "lo")
        assert "default" not in ns.ip("route", "show")
    assert not namespace_exists(ns.name)


def test_an_exception_removes_processes_veth_ends_and_the_namespace() -> None:
    outside = f"nsbv{os.getpid()}"[:15]
    with pytest.raises(RuntimeError, match="boom"), NetNamespace("test") as ns:
        ns.add_veth(outside, "inner0")
        ns.bring_up("inner0", "198.18.1.1/24")
        sleeper = ns.popen(["sleep", "60"])
        assert link_exists(outside) and "inner0" in ns.links()
        assert sleeper.pid in ns.pids()
        raise RuntimeError("boom")
    assert not namespace_exists(ns.name)
    assert not link_exists(outside)
    assert sleeper.returncode is not None and not process_alive(sleeper.pid)


def test_sigterm_unwinds_like_ctrl_c_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), NetNamespace("test") as ns:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # the handler raises before this returns
    assert not namespace_exists(ns.name)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_ctrl_c_during_cleanup_is_held_until_the_namespace_is_gone() -> None:
    """The child answers the cleanup's SIGTERM with a SIGINT to us: cleanup finishes, then the SIGINT is raised."""
    before = signal.getsignal(signal.SIGINT)
    script = f'trap "kill -INT {os.getpid()}; exit 0" TERM; echo ready; sleep 60 & wait'
    with pytest.raises(KeyboardInterrupt, match="SIGINT"), NetNamespace("test") as ns:
        child = ns.popen(["sh", "-c", script], stdout=subprocess.PIPE)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    assert child.returncode == 0  # it ran its trap: the SIGINT was sent during close
    assert not namespace_exists(ns.name)
    assert signal.getsignal(signal.SIGINT) == before


def test_two_namespaces_of_one_process_get_different_names() -> None:
    with NetNamespace("test") as a, NetNamespace("test") as b:
        assert a.name != b.name
        assert namespace_exists(a.name) and namespace_exists(b.name)
    assert not namespace_exists(a.name) and not namespace_exists(b.name)


def test_namespaces_left_by_dead_processes_are_removed_next_time() -> None:
    reaped = subprocess.Popen(["true"])
    reaped.wait()  # a pid that has certainly exited
    zombie = subprocess.Popen(["true"])  # exited, not reaped yet: it holds nothing either
    deadline = time.monotonic() + 5
    while process_alive(zombie.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not process_alive(zombie.pid)
    stale = [f"{netns.NAME_PREFIX}-test-{reaped.pid}", f"{netns.NAME_PREFIX}-veth-{zombie.pid}-3"]
    for name in stale:
        netns.ip("netns", "add", name)
    try:
        with NetNamespace("test") as ns:
            assert not any(namespace_exists(name) for name in stale)
            assert namespace_exists(ns.name)  # ours: this process runs
    finally:
        zombie.wait()
        for name in stale:
            netns.ip("netns", "delete", name, check=False)


def test_processes_left_inside_a_dead_processs_namespace_are_ended_with_it() -> None:
    """SIGKILL gave the owner no chance to end its ping: the next namespace's sweep does."""
    reaped = subprocess.Popen(["true"])
    reaped.wait()
    stale = f"{netns.NAME_PREFIX}-test-{reaped.pid}"
    netns.ip("netns", "add", stale)
    orphan = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "600"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not netns.ip("netns", "pids", stale, check=False).split() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert netns.ip("netns", "pids", stale, check=False).split(), "sleep never started inside"
        assert stale in netns.remove_stale()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert not namespace_exists(stale)
    finally:
        if orphan.poll() is None:
            orphan.kill()
        netns.ip("netns", "delete", stale, check=False)


def test_ip_failures_are_one_line_errors() -> None:
    with NetNamespace("test") as ns, pytest.raises(NetnsError) as err:
        ns.move_in("no-such-link0")
    assert "\n" not in str(err.value) and "no-such-link0" in str(err.value)
    assert not namespace_exists(ns.name)


def test_the_veth_namespace_is_private_and_quiet() -> None:
    """Both ends inside, addresses in 198.18.0.0/15, no default route, nothing in the root namespace."""
    with VethNamespace("test") as lab:
        assert sorted(lab.links()) == sorted(["lo", lab.port, lab.peer])
        assert not link_exists(lab.port) and not link_exists(lab.peer)  # not in the root namespace
        assert "default" not in lab.ip("route", "show")
        assert lab.port_ip.startswith("198.18.") and lab.peer_ip.startswith("198.18.")
        assert f"inet {lab.port_ip}/30" in lab.ip("-o", "address", "show", "dev", lab.port)
        for end in (lab.port, lab.peer):  # no IPv6 address: the stack sends nothing by itself
            assert "inet6" not in lab.ip("-o", "address", "show", "dev", end)
        assert len(lab.port_mac) == len(lab.peer_mac) == 6 and lab.port_mac != lab.peer_mac
    assert not namespace_exists(lab.name)


def test_inside_moves_only_the_calling_thread_and_comes_back() -> None:
    home = _thread_netns()
    seen: list[int] = []
    look, looked = threading.Event(), threading.Event()

    def other_thread() -> None:
        look.wait(10)
        seen.append(_thread_netns())
        looked.set()

    other = threading.Thread(target=other_thread)
    other.start()  # before the switch: a thread started inside would inherit the namespace
    with VethNamespace("test") as lab:
        with lab.inside():
            there = _thread_netns()
            look.set()
            looked.wait(10)
        other.join()
        assert there != home and seen == [home]  # the other thread stayed where it was
        assert _thread_netns() == home
        assert lab.ifindex(lab.port) != lab.ifindex(lab.peer)
        with pytest.raises(NetnsError, match="no such interface"):
            lab.ifindex("eth0")  # the host's interfaces are not in there


def test_a_packet_socket_on_one_end_sees_what_the_other_end_sends() -> None:
    with VethNamespace("test") as lab, lab.packet_socket(lab.port) as port, lab.packet_socket(lab.peer) as peer:
        frame = lab.peer_mac + lab.port_mac + b"\x88\xb5" + bytes(range(46))  # IEEE local experimental
        port.send(frame)
        deadline = time.monotonic() + 5
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            got = list(received_frames(peer))
        assert got == [frame]
        assert list(received_frames(port)) == []  # what a socket sent is not "received"

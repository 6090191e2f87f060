"""The TAP device: the ioctl ABI as if_tun.h spells it, and an interface that lives exactly as long as its fd."""

from __future__ import annotations

import os

import pytest

from driver.netns import NetNamespace, link_exists
from driver.tap.device import IFF_NO_PI, IFF_TAP, IFREQ_FLAGS, TUN_PATH, TUNSETIFF, TapDevice
from tests.needs import need_path, need_root, need_tool


def test_abi_constants_match_if_tun_h() -> None:
    assert TUNSETIFF == 0x400454CA  # _IOW('T', 202, int)
    assert (IFF_TAP, IFF_NO_PI) == (0x0002, 0x1000)
    assert IFREQ_FLAGS.itemsize == 40  # sizeof(struct ifreq) on 64-bit Linux
    assert IFREQ_FLAGS.fields is not None and IFREQ_FLAGS.fields["flags"][1] == 16  # after the 16-byte name


@pytest.mark.parametrize("name", ["", "x" * 16, "a b", "a/b"])
def test_bad_interface_names_are_refused_before_any_syscall(name: str) -> None:
    with pytest.raises(ValueError, match="interface name"):
        TapDevice(name)


@pytest.mark.privileged
def test_interface_exists_while_the_fd_is_open_and_moves_into_a_namespace() -> None:
    need_root("creating a TAP device")
    need_path(TUN_PATH, "the TUN/TAP driver")
    need_tool("ip", "iproute2")
    name = f"nsbtt{os.getpid()}"[:15]
    with NetNamespace("test") as ns:
        with TapDevice(name) as tap:
            assert tap.name == name and link_exists(name)
            ns.move_in(name)
            assert not link_exists(name)  # gone from the root namespace
            ns.bring_up(name, "198.18.2.1/24")
            assert tap.read_frame() is None  # nothing sent yet: a non-blocking read says so
            assert name in ns.links()
        assert name not in ns.links()  # closing the fd unregistered it inside the namespace too

"""The bpf(2) system call, for the four commands the AF_XDP receive path needs.

``union bpf_attr`` (include/uapi/linux/bpf.h) is a union of one anonymous struct
per command; each is declared here as its own struct, zero-filled, and passed
with its own size: the kernel accepts a shorter attr than it knows and reads
the rest as zero (kernel/bpf/syscall.c ``__sys_bpf``, ``bpf_check_uarg_tail_zero``).

- ``BPF_MAP_CREATE`` of type ``BPF_MAP_TYPE_XSKMAP``: index -> AF_XDP socket
  (net/xdp/xskmap.c ``xsk_map_update_elem`` takes the socket fd as the value);
- ``BPF_PROG_LOAD`` of type ``BPF_PROG_TYPE_XDP`` with the verifier log;
- ``BPF_MAP_UPDATE_ELEM``;
- ``BPF_LINK_CREATE`` with attach type ``BPF_XDP`` and ``XDP_FLAGS_SKB_MODE``:
  generic XDP on any device (net/core/dev.c ``bpf_xdp_link_attach``).  Closing
  the link fd detaches the program, so a crashed process leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import platform
from typing import Any

import numpy as np
from cffi import FFI

from driver.afxdp.bpf import BPF_INSN

ffi = FFI()
ffi.cdef(
    """
    struct bpf_map_create_attr {
        uint32_t map_type; uint32_t key_size; uint32_t value_size; uint32_t max_entries;
        uint32_t map_flags; uint32_t inner_map_fd; uint32_t numa_node; char map_name[16];
    };
    struct bpf_map_elem_attr {
        uint32_t map_fd; uint32_t pad; uint64_t key; uint64_t value; uint64_t flags;
    };
    struct bpf_prog_load_attr {
        uint32_t prog_type; uint32_t insn_cnt; uint64_t insns; uint64_t license;
        uint32_t log_level; uint32_t log_size; uint64_t log_buf;
        uint32_t kern_version; uint32_t prog_flags; char prog_name[16];
        uint32_t prog_ifindex; uint32_t expected_attach_type;
    };
    struct bpf_link_create_attr {
        uint32_t prog_fd; uint32_t target_ifindex; uint32_t attach_type; uint32_t flags;
    };
    long syscall(long number, ...);
    int *__errno_location(void);
    """
)
_libc: Any = ffi.dlopen(None)

#: __NR_bpf: arch/x86/entry/syscalls/syscall_64.tbl (x86_64) and include/uapi/asm-generic/unistd.h
#: (the architectures that use the generic table).  None elsewhere: guessing would call another syscall.
NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280}.get(platform.machine())

# enum bpf_cmd (bpf.h)
BPF_MAP_CREATE = 0
BPF_MAP_UPDATE_ELEM = 2
BPF_PROG_LOAD = 5
BPF_LINK_CREATE = 28
# enum bpf_map_type, bpf_prog_type, bpf_attach_type (bpf.h)
BPF_MAP_TYPE_XSKMAP = 17
BPF_PROG_TYPE_XDP = 6
BPF_XDP = 37
BPF_ANY = 0
# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2

LOG_SIZE = 1 << 16


class BpfError(OSError):
    """bpf(2) failed; ``log`` holds the verifier's log for BPF_PROG_LOAD."""

    def __init__(self, code: int, what: str, log: str = "") -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}" + (f"\n{log}" if log else ""))
        self.log = log


def _bpf(cmd: int, attr: Any, what: str, log: str = "") -> int:
    if NR_BPF is None:
        raise BpfError(errno.ENOSYS, f"{what} (no bpf(2) syscall number known for {platform.machine()})")
    size = ffi.cast("unsigned int", ffi.sizeof(attr[0]))
    fd = int(_libc.syscall(ffi.cast("long", NR_BPF), ffi.cast("int", cmd), attr, size))
    if fd < 0:
        raise BpfError(int(_libc.__errno_location()[0]), what, log)
    return fd


def create_xskmap(max_entries: int, name: str = "nsb_xsks") -> int:
    """A new XSKMAP (u32 index -> AF_XDP socket); returns its fd."""
    attr = ffi.new("struct bpf_map_create_attr *")
    attr.map_type = BPF_MAP_TYPE_XSKMAP
    attr.key_size = 4
    attr.value_size = 4
    attr.max_entries = max_entries
    attr.map_name = name.encode()[:15]
    return _bpf(BPF_MAP_CREATE, attr, "BPF_MAP_CREATE xskmap")


def map_update_u32(map_fd: int, key: int, value: int) -> None:
    """map[key] = value, both u32 (for an XSKMAP the value is the socket fd)."""
    k = ffi.new("uint32_t *", key)
    v = ffi.new("uint32_t *", value)
    attr = ffi.new("struct bpf_map_elem_attr *")
    attr.map_fd = map_fd
    attr.key = int(ffi.cast("uintptr_t", k))
    attr.value = int(ffi.cast("uintptr_t", v))
    attr.flags = BPF_ANY
    _bpf(BPF_MAP_UPDATE_ELEM, attr, "BPF_MAP_UPDATE_ELEM")


def load_xdp_program(insns: np.ndarray, name: str = "nsb_xsk_redir") -> int:
    """Load an XDP program (a :data:`driver.afxdp.bpf.BPF_INSN` array); returns its fd.

    ``expected_attach_type = BPF_XDP`` is what ``BPF_LINK_CREATE`` checks
    (kernel/bpf/syscall.c ``bpf_prog_attach_check_attach_type``).
    """
    code = np.ascontiguousarray(insns, dtype=BPF_INSN)
    buf = ffi.from_buffer(code)
    license_ = ffi.new("char[]", b"GPL")
    log = ffi.new("char[]", LOG_SIZE)
    attr = ffi.new("struct bpf_prog_load_attr *")
    attr.prog_type = BPF_PROG_TYPE_XDP
    attr.insn_cnt = len(code)
    attr.insns = int(ffi.cast("uintptr_t", buf))
    attr.license = int(ffi.cast("uintptr_t", license_))
    attr.log_level = 1
    attr.log_size = LOG_SIZE
    attr.log_buf = int(ffi.cast("uintptr_t", log))
    attr.prog_name = name.encode()[:15]
    attr.expected_attach_type = BPF_XDP
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD xdp")
    except BpfError as err:
        raise BpfError(err.errno or 0, "BPF_PROG_LOAD xdp", ffi.string(log).decode(errors="replace")) from None


def attach_xdp_generic(prog_fd: int, ifindex: int) -> int:
    """Attach in generic (skb) mode through a bpf_link; returns the link fd (close it to detach).

    ``ifindex`` is resolved in the calling thread's network namespace.
    """
    attr = ffi.new("struct bpf_link_create_attr *")
    attr.prog_fd = prog_fd
    attr.target_ifindex = ifindex
    attr.attach_type = BPF_XDP
    attr.flags = XDP_FLAGS_SKB_MODE
    return _bpf(BPF_LINK_CREATE, attr, "BPF_LINK_CREATE xdp generic")

"""eBPF bytecode, hand-assembled: the instruction format and the few opcodes the sandbox uses.

One instruction is ``struct bpf_insn`` (include/uapi/linux/bpf.h): an 8-bit
opcode, the destination register in the low nibble and the source register in
the high nibble of one byte, a signed 16-bit offset and a signed 32-bit
immediate.  A 64-bit immediate load (``BPF_LD | BPF_DW | BPF_IMM``) takes two
slots; with ``src_reg = BPF_PSEUDO_MAP_FD`` its immediate is a map file
descriptor that the verifier replaces by the map's address
(kernel/bpf/verifier.c ``resolve_pseudo_ldimm64``).  Opcode encodings are from
include/uapi/linux/bpf_common.h and bpf.h; Documentation/bpf/standardization/
instruction-set.rst describes them.

No compiler is involved at run time: programs are numpy arrays of
:data:`BPF_INSN`, handed to ``BPF_PROG_LOAD`` as they are.
"""

from __future__ import annotations

import numpy as np

#: include/uapi/linux/bpf.h: struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }
BPF_INSN = np.dtype([("code", "u1"), ("regs", "u1"), ("off", "<i2"), ("imm", "<i4")])
assert BPF_INSN.itemsize == 8

# -- instruction classes (bpf_common.h) --------------------------------------
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_ALU64 = 0x07

# -- size and mode (bpf_common.h) --------------------------------------------
BPF_W = 0x00  # 32 bit
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18  # 64 bit
BPF_IMM = 0x00
BPF_MEM = 0x60

# -- ALU / jump operations and source (bpf_common.h, bpf.h) -------------------
BPF_MOV = 0xB0
BPF_K = 0x00  # immediate operand
BPF_X = 0x08  # register operand
BPF_CALL = 0x80
BPF_EXIT = 0x90

#: src_reg of an ld_imm64 whose immediate is a map fd (bpf.h)
BPF_PSEUDO_MAP_FD = 1

# -- registers ---------------------------------------------------------------
R0, R1, R2, R3, R4, R5 = range(6)

# -- helper function ids (bpf.h, ___BPF_FUNC_MAPPER order) --------------------
BPF_FUNC_redirect_map = 51

# -- XDP actions (bpf.h enum xdp_action) -------------------------------------
XDP_ABORTED = 0
XDP_DROP = 1
XDP_PASS = 2
XDP_TX = 3
XDP_REDIRECT = 4

#: bpf.h struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index (u32 each)
XDP_MD_RX_QUEUE_INDEX = 16


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> tuple[int, int, int, int]:
    return (code, (src << 4) | dst, off, imm)


def mov64_imm(dst: int, imm: int) -> list[tuple[int, int, int, int]]:
    """dst = imm (sign-extended 32-bit immediate)."""
    return [_insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)]


def ldx_w(dst: int, src: int, off: int) -> list[tuple[int, int, int, int]]:
    """dst = *(u32 *)(src + off)."""
    return [_insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off)]


def ld_map_fd(dst: int, map_fd: int) -> list[tuple[int, int, int, int]]:
    """dst = the map behind ``map_fd`` (two slots: ld_imm64 with src = BPF_PSEUDO_MAP_FD)."""
    return [_insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, imm=map_fd), _insn(0)]


def call(helper: int) -> list[tuple[int, int, int, int]]:
    """r0 = helper(r1, ..., r5)."""
    return [_insn(BPF_JMP | BPF_CALL, imm=helper)]


def exit_() -> list[tuple[int, int, int, int]]:
    """return r0."""
    return [_insn(BPF_JMP | BPF_EXIT)]


def assemble(*parts: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Concatenate instruction lists into one :data:`BPF_INSN` array."""
    rows = [row for part in parts for row in part]
    return np.array(rows, dtype=BPF_INSN)


def xsk_redirect_program(xskmap_fd: int) -> np.ndarray:
    """``return bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS);``

    The low bits of the flags argument are the action returned when the map has
    no socket at that index (net/core/filter.c ``__bpf_xdp_redirect_map``), so
    frames on a queue without an AF_XDP socket go on to the stack.
    """
    return assemble(
        ldx_w(R2, R1, XDP_MD_RX_QUEUE_INDEX),
        ld_map_fd(R1, xskmap_fd),
        mov64_imm(R3, XDP_PASS),
        call(BPF_FUNC_redirect_map),
        exit_(),
    )

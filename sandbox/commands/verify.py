"""``nic-sandbox verify --format xdp``: judge AF_XDP TX descriptors by the Linux kernel's rules, offline or live.

The verdicts come from verifier/rules/xdp.py, which re-implements the kernel's
checks (net/xdp/xsk_queue.h, net/xdp/xsk.c).  ``--against kernel`` runs the
same descriptors through a real AF_XDP socket (driver/afxdp/probe.py
``kernel_tx_verdicts``) and reports where the two disagree; any disagreement
is exit code 1, since then the re-implementation is wrong.  Descriptors come
from a JSON Lines file (sandbox/commands/xdp_jsonl.py) or from the case generator
(fuzz/xdp_cases.py, ``--generate N``); the ``struct xsk_tx_metadata`` in front
of each buffer from the same lines (``"meta"``), the generator, or a UMEM image
(``--umem-image``).

The ``tx_metadata_len`` rules differ between kernels (verifier/rules/xdp.py
``TxMetadataRules``): with a metadata area, :func:`running_kernel_rules` asks
the running kernel once per process and falls back, with one line on stderr, to
the newest documented rules when it cannot.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fuzz.xdp_cases import CLASSES, generate
from sandbox.argtypes import bounded_number
from sandbox.commands.xdp_jsonl import (
    META_FIELDS,
    DescriptorLineError,
    bounded_lines,
    read_descriptors,
    write_descriptors,
)
from sandbox.errors import UsageError
from verifier.rules.xdp import (
    NEWEST_RULES,
    TxMetadataRules,
    UmemRejected,
    XdpUmem,
    check_xdp_tx,
    metadata_from_image,
    reason_names,
)

P = TypeVar("P", bound=argparse.ArgumentParser)
EXIT_DISAGREE = 1
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
#: --generate's ceiling: ten million descriptors is already minutes through a real socket.
MAX_GENERATE = 10**7


def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    """Add ``verify`` to the ``nic-sandbox`` sub-command set."""
    verify = sub.add_parser(
        "verify",
        help="judge AF_XDP TX descriptors by the Linux kernel's own rules (and check against a real socket)",
        description=(
            "Reads AF_XDP TX descriptors (struct xdp_desc: addr, len, options; UMEM-relative addresses) and says, "
            "for each, whether the Linux kernel would transmit it, and if not which rule refuses it: the "
            "descriptor checks of net/xdp/xsk_queue.h (xp_aligned_validate_desc, xp_unaligned_validate_desc, "
            "xp_unused_options_set) and the multi-buffer packet rules of net/xdp/xsk.c (XDP_PKT_CONTD chains "
            "descriptors into packets of at most 18; a packet goes whole or not at all).  The UMEM flags are "
            "checked as xdp_umem_reg (net/xdp/xdp_umem.c) checks them at registration.\n\n"
            'Input: JSON Lines, one {"addr": A, "len": L, "options": O} per line, numbers as integers or '
            '"0x..." strings, optional "class" label, optional "meta": {"flags": F, "csum_start": S, '
            '"csum_offset": O, "launch_time": T} (the struct xsk_tx_metadata before the buffer, which '
            "xsk_skb_metadata in net/xdp/xsk.c checks for a packet's first descriptor with XDP_TX_METADATA; "
            "absent: all zero), or the metadata read from --umem-image.  Output: per descriptor, in order, "
            '{"index": i, "accepted": bool, "reason": CODE or null} with --json, a table otherwise.  Reason '
            "codes: docs/verifier.md, section 'The xdp format'.\n\n"
            "--against kernel also sends every descriptor through a real AF_XDP socket (copy mode, on a veth "
            "pair in a private network namespace; needs root) and prints how many verdicts agree and every one "
            "that does not."
        ),
        epilog=(
            "examples:\n"
            '  echo \'{"addr": 0, "len": 64, "options": 0}\' | \\\n'
            "      nic-sandbox verify --format xdp --umem-size 0x100000 --chunk-size 2048\n"
            "  nic-sandbox verify --format xdp --umem-size 4194304 --chunk-size 4096 --tx-metadata-len 16 "
            "--input descs.jsonl --json\n"
            "  nic-sandbox verify --format xdp --umem-size 3000000 --chunk-size 3000 --unaligned "
            "--generate 200 --seed 7\n"
            "  nic-sandbox verify --format xdp --umem-size 4194304 --chunk-size 2048 --generate 1000 --emit "
            "> cases.jsonl\n"
            "  sudo nic-sandbox verify --format xdp --umem-size 4194304 --chunk-size 2048 --input cases.jsonl "
            "--against kernel --summary\n\n"
            f"case classes for --generate: {', '.join(CLASSES)}.\n\n"
            "exit codes: 0 done (rejections are verdicts, not failures), 1 the kernel disagreed with a verdict, "
            "2 bad usage, bad input or an impossible UMEM"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("--format", required=True, choices=["xdp"], help="descriptor format (only xdp: AF_XDP TX)")
    # xdp_umem_reg: len is a u64, chunk_size and tx_metadata_len are u32 (include/uapi/linux/if_xdp.h)
    _int_option(
        verify, "--umem-size", 0, U64_MAX, "N", "UMEM bytes (a whole number of chunks in aligned mode)", required=True
    )
    _int_option(
        verify,
        "--chunk-size",
        0,
        U32_MAX,
        "C",
        "chunk bytes: 2048 up to the page size; a power of two unless --unaligned",
        required=True,
    )
    verify.add_argument(
        "--unaligned", action="store_true", help="XDP_UMEM_UNALIGNED_CHUNK_FLAG: buffers start anywhere"
    )
    _int_option(
        verify,
        "--tx-metadata-len",
        0,
        U32_MAX,
        "M",
        "bytes of struct xsk_tx_metadata before each buffer (XDP_UMEM_TX_METADATA_LEN); "
        "a multiple of 8 below 256, at least what the running kernel registers (16 on Linux 6.18.44), "
        "default 0 (none)",
        default=0,
    )
    verify.add_argument(
        "--umem-image",
        metavar="FILE",
        help="the UMEM's bytes (exactly --umem-size of them): each descriptor's metadata is read from it",
    )
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="FILE", help="JSON Lines descriptors; '-' for stdin (the default)")
    _int_option(
        source,
        "--generate",
        1,
        MAX_GENERATE,
        "N",
        "judge N generated descriptors of every case class, aimed at this UMEM's edges",
    )
    _int_option(verify, "--seed", 0, 2**63 - 1, "SEED", "seed of --generate (default 1)")
    verify.add_argument(
        "--emit", action="store_true", help="with --generate: print the descriptors as JSON Lines input and stop"
    )
    verify.add_argument(
        "--against", choices=["kernel"], help="kernel: also run every descriptor through a real AF_XDP socket"
    )
    verify.add_argument("--json", action="store_true", help="JSON Lines out: one verdict per descriptor")
    verify.add_argument(
        "--summary", action="store_true", help="table mode: print only the totals (and any disagreements)"
    )
    verify.set_defaults(func=cmd_verify)


def _int_option(
    parser: argparse._ActionsContainer, flag: str, low: int, high: int, metavar: str, help: str, **extra: Any
) -> None:
    """An integer flag (``0x...`` allowed) within ``[low, high]``; bad values are one-line errors naming ``flag``."""
    parser.add_argument(flag, type=bounded_number(int, flag, low, high), metavar=metavar, help=help, **extra)


@dataclass
class Agreement:
    """Verifier verdicts next to the kernel's, descriptor by descriptor."""

    verifier: npt.NDArray[np.bool_]
    kernel: npt.NDArray[np.bool_]
    seconds: float
    meta: npt.NDArray[np.void] | None = None  # XSK_TX_METADATA per descriptor, shown with disagreements

    @property
    def disagreements(self) -> list[int]:
        return np.flatnonzero(self.verifier != self.kernel).tolist()

    def counts(self) -> dict[str, int]:
        both = self.verifier & self.kernel
        neither = ~self.verifier & ~self.kernel
        return {
            "descriptors": int(self.verifier.size),
            "agree": int(np.count_nonzero(self.verifier == self.kernel)),
            "disagree": len(self.disagreements),
            "accepted_by_both": int(np.count_nonzero(both)),
            "rejected_by_both": int(np.count_nonzero(neither)),
            "only_verifier_accepts": int(np.count_nonzero(self.verifier & ~self.kernel)),
            "only_kernel_accepts": int(np.count_nonzero(~self.verifier & self.kernel)),
        }


def cmd_verify(args: argparse.Namespace, out: Console) -> int:
    for flag in ("seed", "emit"):
        if getattr(args, flag) not in (None, False) and args.generate is None:
            raise UsageError(f"--{flag} only applies with --generate")
    if args.emit and (args.against or args.json or args.summary):
        raise UsageError("--emit prints the generated descriptors and stops: drop --against, --json, --summary")
    if args.summary and args.json:
        raise UsageError("--summary is for the table; --json always prints every verdict")
    if args.umem_image is not None and (args.generate is not None):
        raise UsageError("--umem-image gives the metadata of --input's descriptors; --generate makes its own")
    rules = running_kernel_rules() if args.tx_metadata_len else NEWEST_RULES
    try:
        umem = XdpUmem(args.umem_size, args.chunk_size, args.unaligned, args.tx_metadata_len, rules=rules)
    except UmemRejected as err:
        raise UsageError(f"the kernel would not register this UMEM: {err}") from None
    image = _umem_image(args.umem_image, umem.size) if args.umem_image is not None else None
    descs, labels, meta = _descriptors(args, umem)
    if image is not None:
        if meta is not None:
            raise UsageError(f'--input {args.input or "-"} has "meta" on its lines and --umem-image gives it too')
        meta = metadata_from_image(descs, umem, image)
    if args.emit:
        for line in write_descriptors(descs, labels, meta):
            print(line)
        return 0
    verdicts = check_xdp_tx(descs, umem, meta)
    names = reason_names(verdicts)
    agreement = _against_kernel(descs, umem, verdicts.accepted, args, out, meta, image) if args.against else None
    if args.json:
        _print_json(names, descs, labels, agreement)
    else:
        _print_table(out, umem, descs, labels, names, agreement, args.summary, meta)
    return EXIT_DISAGREE if agreement is not None and agreement.disagreements else 0


@functools.cache
def running_kernel_rules() -> TxMetadataRules:
    """The running kernel's :class:`TxMetadataRules`, asked once per process (driver/afxdp/probe.py).

    Without AF_XDP or the privilege to open a socket: the newest documented
    rules (``verifier.rules.xdp.NEWEST_RULES``), said in one line on stderr.
    """
    from driver.afxdp.probe import launch_time_needs_room, smallest_tx_metadata_len  # cffi only when needed

    try:
        rules = TxMetadataRules(
            smallest_tx_metadata_len(), launch_time_needs_room(), f"probed on this kernel, Linux {platform.release()}"
        )
    except OSError as err:
        why = err.strerror or str(err)
        print(
            f"nic-sandbox verify: cannot ask this kernel for its tx metadata rules ({why}); "
            f"assuming the newest documented ones: tx_metadata_len {NEWEST_RULES.describe()}",
            file=sys.stderr,
        )
        return NEWEST_RULES
    return rules


def _umem_image(path: str, size: int) -> npt.NDArray[np.uint8]:
    try:
        have = os.path.getsize(path)
        if have != size:
            raise UsageError(f"--umem-image {path}: {have:,} bytes, but the UMEM (--umem-size) is {size:,}")
        return np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UsageError(f"--umem-image {path}: {err.strerror or err}") from None


def _descriptors(
    args: argparse.Namespace, umem: XdpUmem
) -> tuple[npt.NDArray[np.void], list[str], npt.NDArray[np.void] | None]:
    if args.generate is not None:
        cases = generate(umem, args.generate, 1 if args.seed is None else args.seed)
        return cases.descs, cases.labels, cases.meta
    path = args.input or "-"
    if path == "-" and sys.stdin.isatty():
        raise UsageError("no descriptors: give --input FILE, pipe them into --input -, or use --generate N")
    try:
        with _open(path) as stream:
            return read_descriptors(bounded_lines(stream))
    except DescriptorLineError as err:
        raise UsageError(f"{'stdin' if path == '-' else path}: {err}") from None
    except OSError as err:
        raise UsageError(f"--input {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--input {path}: not UTF-8 text") from None


def _open(path: str) -> AbstractContextManager[IO[str]]:
    return nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8")


def _against_kernel(
    descs: npt.NDArray[np.void],
    umem: XdpUmem,
    accepted: npt.NDArray[np.bool_],
    args: argparse.Namespace,
    out: Console,
    meta: npt.NDArray[np.void] | None = None,
    image: npt.NDArray[np.uint8] | None = None,
) -> Agreement:
    """Run the descriptors through a real socket and set its verdicts beside the verifier's ``accepted``."""
    from driver.afxdp.probe import kernel_tx_verdicts  # cffi and bpf(2) only when asked for

    bar: AbstractContextManager[Any] = nullcontext()
    report: Callable[[int], None] | None = None
    if out.is_terminal and not args.json:
        progress = Progress(
            TextColumn("[bold]AF_XDP socket"), BarColumn(), MofNCompleteColumn(), TextColumn("descriptors"),
            TimeElapsedColumn(), console=out, transient=True,
        )  # fmt: skip
        task = progress.add_task("kernel", total=len(descs))
        bar = progress

        def report(done: int) -> None:
            progress.update(task, completed=done)

    start = time.perf_counter()
    try:
        with bar:
            kernel = kernel_tx_verdicts(
                descs, umem.size, umem.chunk_size, umem.unaligned, umem.tx_metadata_len, progress=report,
                meta=meta, umem_image=image,
            )  # fmt: skip
    except OSError as err:
        raise UsageError(f"--against kernel: cannot run an AF_XDP socket here (needs root and AF_XDP): {err}") from None
    return Agreement(accepted, np.asarray(kernel, dtype=bool), time.perf_counter() - start, meta)


def _disagreement_rows(
    agreement: Agreement, names: list[str | None], descs: npt.NDArray[np.void], labels: list[str]
) -> Iterator[dict[str, object]]:
    for i in agreement.disagreements:
        d = descs[i]
        yield {
            "index": i,
            "addr": hex(int(d["addr"])),
            "len": int(d["len"]),
            "options": hex(int(d["options"])),
            "class": labels[i] or None,
            "meta": None if agreement.meta is None else dict(zip(META_FIELDS, agreement.meta[i].tolist(), strict=True)),
            "verifier": {"accepted": bool(agreement.verifier[i]), "reason": names[i]},
            "kernel": {"accepted": bool(agreement.kernel[i])},
        }


def _print_json(
    names: list[str | None], descs: npt.NDArray[np.void], labels: list[str], agreement: Agreement | None
) -> None:
    lines = (json.dumps({"index": i, "accepted": name is None, "reason": name}) for i, name in enumerate(names))
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    if agreement is not None:
        summary = {
            "against": "kernel",
            **agreement.counts(),
            "seconds": round(agreement.seconds, 3),
            "disagreements": list(_disagreement_rows(agreement, names, descs, labels)),
        }
        print(json.dumps(summary))


def _print_table(
    out: Console,
    umem: XdpUmem,
    descs: npt.NDArray[np.void],
    labels: list[str],
    names: list[str | None],
    agreement: Agreement | None,
    summary_only: bool,
    meta: npt.NDArray[np.void] | None = None,
) -> None:
    title = (
        f"xdp: {umem.mode} UMEM of {umem.size:,} bytes, {umem.chunk_size}-byte chunks, "
        f"tx metadata {umem.tx_metadata_len}"
    )
    with_labels = any(labels)
    if not summary_only:
        table = Table(title=title)
        optional = [*(["class"] if with_labels else []), *(["metadata"] if meta is not None else [])]
        for col in ("#", "addr", "len", "options", *optional, "verdict"):
            table.add_column(col, justify="right" if col in ("#", "len") else "left", no_wrap=True)
        fields = zip(descs["addr"].tolist(), descs["len"].tolist(), descs["options"].tolist(), names, strict=True)
        for i, (addr, length, options, name) in enumerate(fields):
            verdict = "[green]accepted[/]" if name is None else f"[red]{name}[/]"
            extra = [labels[i]] if with_labels else []
            if meta is not None:
                flags, start, offset, _ = meta[i].tolist()
                extra.append(f"flags {flags:#x}, csum {start}+{offset}" if flags or start or offset else "")
            table.add_row(str(i), hex(addr), str(length), hex(options), *extra, verdict)
        out.print(table)
    else:
        out.print(title)
    refused = Counter(name for name in names if name is not None)
    accepted = len(names) - sum(refused.values())
    by_reason = ", ".join(f"{name} {n:,}" for name, n in refused.most_common())
    out.print(f"{len(names):,} descriptors: {accepted:,} accepted, {sum(refused.values()):,} rejected" +
              (f" ({by_reason})" if by_reason else ""))  # fmt: skip
    if agreement is None:
        return
    c = agreement.counts()
    colour = "green" if not c["disagree"] else "red"
    out.print(
        f"[{colour}]kernel agreement: {c['agree']:,} of {c['descriptors']:,} descriptors[/] "
        f"({c['accepted_by_both']:,} accepted by both, {c['rejected_by_both']:,} rejected by both); "
        f"{c['disagree']:,} disagreements; {agreement.seconds:.2f} s through the socket"
    )
    if c["disagree"]:
        table = Table(title="disagreements")
        for col in ("#", "addr", "len", "options", "class", "verifier", "kernel"):
            table.add_column(col, no_wrap=True)
        for row in _disagreement_rows(agreement, names, descs, labels):
            v = row["verifier"]
            assert isinstance(v, dict)
            table.add_row(
                str(row["index"]), str(row["addr"]), str(row["len"]), str(row["options"]), str(row["class"] or ""),
                "accepted" if v["accepted"] else str(v["reason"]),
                "accepted" if row["kernel"] == {"accepted": True} else "rejected",
            )  # fmt: skip
        out.print(table)

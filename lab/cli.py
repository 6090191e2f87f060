"""``python -m lab``: build the lab VM, run a command, a shell, the lab tests or the demo inside it.

Bad input ends with one line on stderr and exit code 2.  ``run``, ``test``
and ``demo`` exit with the guest command's own exit code, 124 when the
command timed out and 125 when the guest reported no exit code at all.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from rich.console import Console

from lab import image as lab_image
from lab import qemu
from lab.kernel import LabBuildError
from lab.run import EXIT_NO_REPORT, EXIT_TIMEOUT, LabResult, LabRunError, run
from lab.spec import cache_root
from sandbox.signals import exit_code, sigterm_as_interrupt

PROG = "python -m lab"
EXIT_USAGE = 2
#: Inside the guest: the project's lab tests, verbose enough to see each one.
#: Only tests/lab/ is collected: the rest of the suite runs on the host, and collecting it costs ~30 s under TCG.
GUEST_PYTEST = ["python3", "-m", "pytest", "-p", "no:cacheprovider", "-m", "lab", "-rA", "tests/lab"]
#: The demo: the VFIO back end through PHY loopback and the attack set with and without the verifier.
GUEST_DEMO = ["python3", "-m", "lab.guest.demo"]
#: What QEMU's -m takes: a size with an optional unit (util/cutils.c, qemu_strtosz; case-insensitive).
MEMORY_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?[bkmgtBKMGT]?")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _memory(text: str) -> str:
    """QEMU's ``-m`` size: a number with an optional B/K/M/G/T suffix (qemu_strtosz); refused here, not by QEMU."""
    if not MEMORY_SIZE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a size such as 1G or 1536M, got {text!r}")
    return text


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def _command(sub: argparse._SubParsersAction[_Parser], name: str, summary: str, description: str,
             *examples: str) -> argparse.ArgumentParser:  # fmt: skip
    """One subcommand, its --help ending with the examples."""
    heading = "example" if len(examples) == 1 else "examples"
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"{heading}:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog=PROG,
        description=(
            "The lab: a Debian 6.1 guest under QEMU (TCG) with an emulated VT-d IOMMU, an e1000e (82574L) "
            "for the VFIO back end and a virtio-net carrying soft-RoCE (rxe) for the verbs back end.  The "
            "project is mounted read-write at /project in the guest and runs from source there.  The image "
            "(kernel, module closure, debootstrap root file system, busybox initramfs) is built once, about a "
            "minute, and cached under ~/.cache/nic-sandbox/lab; a boot takes a few seconds."
        ),
        epilog=(
            "examples:\n"
            "  python -m lab build                    build (or find) the image and print what it holds\n"
            "  python -m lab run -- uname -r          one command in the guest; exits with its code\n"
            "  python -m lab run -- 'dmesg | grep -i dmar'\n"
            "  python -m lab shell                    an interactive shell (Ctrl-A x leaves QEMU)\n"
            "  python -m lab test                     pytest -m lab inside the guest\n"
            "  python -m lab test -- -k vfio -x       ... with extra pytest arguments\n"
            "  python -m lab demo                     the VFIO demo: loopback traffic, attacks, DMAR faults\n"
            "  python -m lab test --noiommu           the lab tests of the no-IOMMU variant (no VT-d)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def noiommu_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--noiommu", action="store_true",
                       help="the no-IOMMU variant: no VT-d, vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU "
                            "(built once, ~15 s), /dev/vfio/noiommu-N")  # fmt: skip

    def memory_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--memory", type=_memory, default="1G", metavar="SIZE",
                       help="guest memory, as QEMU's -m (default 1G)")  # fmt: skip

    def boot_flags(p: argparse.ArgumentParser, timeout: float) -> None:
        p.add_argument("--timeout", type=_positive, default=timeout, metavar="S",
                       help=f"kill the VM after S seconds (default {timeout:g})")  # fmt: skip
        memory_flag(p)
        p.add_argument("--quiet", action="store_true", help="do not copy the guest's console to stdout")
        noiommu_flag(p)

    build = _command(sub, "build", "build the image (or find it in the cache) and print its manifest",
                     "Build the lab image, each part only when its inputs changed.",
                     "python -m lab build --rebuild")  # fmt: skip
    build.add_argument("--rebuild", action="store_true", help="build every part again, even if cached")
    build.add_argument("--noiommu", action="store_true", help="also build the no-IOMMU variant (vfio.ko rebuilt)")

    runp = _command(
        sub,
        "run",
        "boot, run one command in the guest (cwd /project), power off",
        "Runs COMMAND with /bin/sh in the guest as root, in /project, with PYTHONPATH=/project.  One "
        "argument is taken as a shell line; several are quoted as argv.  The guest's kernel log is "
        "saved as dmesg.txt in the run's folder (printed at the end).",
        "python -m lab run -- ls /dev/vfio",
        "python -m lab run --env FOO=1 -- 'echo $FOO'",
    )
    boot_flags(runp, 600)
    runp.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
                      help="export NAME=VALUE for the command (repeatable)")  # fmt: skip
    runp.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="what to run in the guest")

    shell = _command(sub, "shell", "an interactive shell in the guest (Ctrl-A x quits QEMU)",
                     "Boots the guest with a bash on the serial line, the project in /project.",
                     "python -m lab shell")  # fmt: skip
    memory_flag(shell)
    noiommu_flag(shell)

    test = _command(sub, "test", "pytest -m lab inside the guest",
                    "Runs the project's lab-marked tests inside the guest.",
                    "python -m lab test", "python -m lab test -- -k dmar -x")  # fmt: skip
    boot_flags(test, 900)
    test.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- PYTEST-ARGS", help="more pytest arguments")

    demo = _command(
        sub,
        "demo",
        "the VFIO demo inside the guest",
        "Loopback traffic through the real e1000e with the verifier in front, then the attack set with "
        "the verifier (refused, audited) and without it (the IOMMU faults, matched to each attack from the guest's "
        "kernel log).",
        "python -m lab demo",
    )
    boot_flags(demo, 600)

    _command(sub, "info", "where the cached image is and what it holds (JSON)",
             "Prints the manifest of the cached image, or says it is not built.", "python -m lab info")  # fmt: skip
    _command(sub, "clean", "remove the whole lab cache (images and old runs)", f"Deletes {cache_root()}.",
             "python -m lab clean")  # fmt: skip
    return top


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def progress_printer(console: Console) -> lab_image.Progress:
    start = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[dim]lab {time.monotonic() - start:5.1f} s[/dim] {message}", highlight=False)

    return say


def _exit_code(result: LabResult, err: Console) -> int:
    err.print(result.summary(), highlight=False, soft_wrap=True)
    if result.timed_out:
        return EXIT_TIMEOUT
    if result.exit_code is None:
        err.print(f"lab: the guest reported no exit code; see {result.run_dir / 'console.log'}", highlight=False)
        return EXIT_NO_REPORT
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab``; SIGTERM stops the VM as Ctrl-C does (sandbox/signals.py)."""
    with sigterm_as_interrupt():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    err = Console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "clean":
            shutil.rmtree(cache_root(), ignore_errors=True)
            print(f"removed {cache_root()}")
            return 0
        if args.command == "info":
            found = lab_image.cached_image()
            if found is None:
                print("the lab image is not built yet (python -m lab build)")
                return 1
            print(found.manifest.read_text(), end="")
            return 0
        command: str | list[str] = []
        if args.command == "run":
            words = _strip_dashes(args.argv)
            if not words:
                raise UsageError(f"run needs a command after '--' (see '{PROG} run --help')")
            command = words[0] if len(words) == 1 else words
        elif args.command == "test":
            color = "--color=yes" if sys.stdout.isatty() else "--color=no"
            command = [*GUEST_PYTEST, color, *_strip_dashes(args.argv)]
        elif args.command == "demo":
            command = GUEST_DEMO
        say = progress_printer(err)
        image = lab_image.ensure_image(say, rebuild=getattr(args, "rebuild", False),
                                       variant_noiommu=getattr(args, "noiommu", False))  # fmt: skip
        if args.command == "build":
            manifest = json.loads(image.manifest.read_text())
            keys = ("kernel_package", "kernel_version", "image_key", "installed", "build_seconds")
            print(json.dumps({k: manifest[k] for k in keys}, indent=1))
            return 0
        if args.command == "shell":
            config = qemu.VmConfig(memory=args.memory, interactive=True)
            say("booting; Ctrl-A x leaves QEMU, 'exit' powers the guest off")
            shell = run(image, "exec /bin/bash -l", timeout=24 * 3600, config=config)
            return 0 if shell.exit_code is not None else EXIT_NO_REPORT
        echo = None if args.quiet else sys.stdout
        env = dict(args.env) if args.command == "run" else {}
        result = run(image, command, timeout=args.timeout, echo=echo, env=env, config=qemu.VmConfig(memory=args.memory))
        return _exit_code(result, err)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LabBuildError, LabRunError, OSError) as exc:  # a failed step or a file the cache could not write
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print(f"{PROG}: interrupted; the VM was stopped", file=sys.stderr)
        return exit_code(interrupt)  # 130 after Ctrl-C, 143 after SIGTERM

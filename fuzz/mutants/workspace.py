"""A mutant's private copy of the source tree: copied, mutated, compiled, and checked to be what runs.

Only what a campaign and the tests need is copied (no .venv, no .git, no
lab): about 8 MB.  A *base* copy is made once per run, with the compiled
accelerators built if the tree has none; each mutant copies the base,
applies its one replacement and, for a mutant of a .c file, recompiles the
verifier's fast path in the copy (cffi, as ``python -m ring.cbuild`` does).
Subprocesses run with the copy as their working directory and first
``PYTHONPATH`` entry, so the copy's packages shadow the editable install;
``check`` proves it (``verifier.__file__`` lies in the copy) and that the
compiled fast path loaded (a C mutant whose module the kernel refused would
otherwise be fuzzed as pure numpy and "survive").  A mutant that does not
import or compile is *invalid*, not killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fuzz.mutants.model import Mutant
from ring.compiled import SWITCH

#: What a campaign and tests/ need of the tree.
#: (docs/: tests check that the docs list every reason code, README.md: that it names the commands.)
COPIED = (
    *("auditor", "device", "driver", "fuzz", "measure", "ring", "sandbox", "verifier", "world", "tests", "docs"),
    *("pyproject.toml", "setup.py", "README.md", "Makefile"),
)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.o", ".mypy_cache", ".pytest_cache", ".ruff_cache")
#: The compiled accelerators a base copy must hold (ring/cbuild.py builds them beside their sources).
MODULES = ("verifier/rules/_fastpath", "device/_fastdev", "driver/tenant/_pmd")
BUILD_FASTPATH = "from ring.cbuild import FASTPATH, ROOT; FASTPATH.builder().compile(tmpdir=str(ROOT))"
CHECK = (
    "import sys, pathlib, verifier, verifier.kernel, verifier.modes.shadow, fuzz.campaign\n"
    "from verifier.rules import fastpath\n"
    "here = pathlib.Path.cwd().resolve()\n"
    "if here not in pathlib.Path(verifier.__file__).resolve().parents: sys.exit('verifier imported from elsewhere')\n"
    "if fastpath.enabled() is None: sys.exit('the compiled fast path is not loaded: ' + fastpath.status())\n"
)


class WorkspaceError(Exception):
    """The base copy could not be made (the tree itself does not build)."""


@dataclass(frozen=True)
class Prepared:
    path: Path
    invalid: str | None = None  # why the mutant does not import or compile


def environment(work: Path, accelerators: bool = True) -> dict[str, str]:
    """The environment of a subprocess in a copy: its packages first, the compiled accelerators allowed, or off
    (``NIC_SANDBOX_FASTPATH=0``: the machine a mutant of the numpy rules is judged on, targets.py ``REFERENCE``)."""
    env = dict(os.environ)
    env.pop(SWITCH, None)
    if not accelerators:
        env[SWITCH] = "0"
    env["PYTHONPATH"] = str(work)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(args: list[str], work: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=work, env=environment(work), capture_output=True, text=True, timeout=timeout
    )


def _copy(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in COPIED:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_IGNORE)
        elif src.exists():
            shutil.copy2(src, dest / name)


def make_base(root: Path, dest: Path) -> Path:
    """The unmutated copy every mutant starts from, accelerators built; WorkspaceError if it does not check."""
    _copy(root, dest)
    if any(not list((dest / m).parent.glob(Path(m).name + "*.so")) for m in MODULES):
        done = _run(["-m", "ring.cbuild"], dest)
        if done.returncode:
            raise WorkspaceError(f"cannot compile the accelerators: {_last_line(done.stderr)}")
    done = _run(["-c", CHECK], dest, timeout=120)
    if done.returncode:
        raise WorkspaceError(f"the unmutated tree does not check: {_last_line(done.stderr)}")
    return dest


def prepare(base: Path, mutant: Mutant, dest: Path) -> Prepared:
    """Copy the base, apply the mutant, recompile if it is C, check that it imports and runs the copy."""
    shutil.copytree(base, dest)
    target = dest / mutant.file
    target.write_text(mutant.apply(target.read_text()))
    if mutant.file.endswith(".c"):
        for old in (dest / "verifier" / "rules").glob("_fastpath*"):
            old.unlink()
        done = _run(["-c", BUILD_FASTPATH], dest)
        if done.returncode:
            return Prepared(dest, f"does not compile: {_error_line(done.stdout + done.stderr)}")
    done = _run(["-c", CHECK], dest, timeout=120)
    if done.returncode:
        return Prepared(dest, f"does not load: {_last_line(done.stderr)}")
    return Prepared(dest)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _error_line(text: str) -> str:
    errors = [line.strip() for line in text.splitlines() if "error" in line]
    return errors[0] if errors else _last_line(text)

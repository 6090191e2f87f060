"""The guest's root file system: ``debootstrap --variant=minbase`` of Debian bookworm.

It is exported read-only over virtio-9p, so one tree serves every VM that
runs at the same time.  The guest's init mounts tmpfs where Debian expects
to write (/tmp, /run, /var/tmp, /root) and 9p shares at the mount points
made here (/project for the project, /lab/run for the run's files).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from lab.kernel import LabBuildError
from lab.spec import HOSTNAME, MOUNT_POINTS, PRUNE, LabSpec

#: debootstrap's "I: ..." lines worth a progress line (one per stage, not one per package).
STAGES = (
    "Retrieving Release",
    "Resolving dependencies",
    "Installing required",
    "Configuring required",
    "Unpacking the base",
    "Configuring the base",
    "Base system",
)


def debootstrap(spec: LabSpec, target: Path, log: Path, progress: Callable[[str], None]) -> None:
    """Build the tree at ``target`` (which must not exist); debootstrap's own log goes to ``log``."""
    if shutil.which("debootstrap") is None:
        raise LabBuildError("debootstrap is not installed (apt-get install debootstrap)")
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(spec.packages)}",
        spec.suite,
        str(target),
        spec.mirror,
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            # debootstrap's stages: "I: Retrieving ...", "I: Unpacking ...", "I: Configuring ..."
            if line.startswith("I: ") and any(stage in line for stage in STAGES):
                progress(line[3:].strip())
        code = proc.wait()
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise LabBuildError(f"debootstrap failed ({code}): {tail[0]} (full log: {log})")
    finish(target)


def finish(target: Path) -> None:
    """Mount points, a hostname, and no package caches (lab/spec.py lists them: they are in the cache key)."""
    for rel in MOUNT_POINTS:
        (target / rel).mkdir(parents=True, exist_ok=True)
    for rel in PRUNE:
        path = target / rel
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()
    (target / "etc/hostname").write_text(f"{HOSTNAME}\n")


def installed_versions(target: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """What the tree really holds (the mirror moves; the manifest records what was built)."""
    out = subprocess.run(
        ["chroot", str(target), "dpkg-query", "-W", "-f=${Package} ${Version}\\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

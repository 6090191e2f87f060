"""On the host: build (or find) the lab image, boot it once, and run every ``lab`` test inside it.

This is how the in-guest tests (tests/lab/test_guest_*.py, test_vfio_*.py,
test_verbs_*.py) reach ``make test`` and CI: one boot, one pytest run in the
guest, its JUnit report read back through the run folder.  A second boot
runs the no-IOMMU variant's tests (``lab(variant="noiommu")``: no VT-d,
vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU; it also needs make and gcc-12).  The image is
cached (~/.cache/nic-sandbox/lab); building it from nothing takes about a
minute and a half.  Needs QEMU, debootstrap, busybox-static and root; under
CI=true a missing one fails (tests/needs.py).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cli import GUEST_PYTEST
from lab.image import ensure_image
from lab.run import run
from tests.needs import need_root, need_tool

#: The default boot's guest tests (devices, the VFIO back end, the verbs back end and its differential);
#: the guest run must have executed every one of them.
IOMMU_TESTS = ("test_guest_devices.py", "test_vfio_backend.py", "test_vfio_attacks.py", "test_verbs_lab.py")
#: The no-IOMMU variant's tests (a second boot: no VT-d, vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU).
NOIOMMU_TESTS = ("test_noiommu_lab.py",)
BOOT_AND_TEST_TIMEOUT_S = 900.0


def junit_cases(path: Path) -> list[tuple[str, str, str]]:
    """(file, test name, outcome) of every test case in a JUnit XML report."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        cases.append((case.get("classname", "").rsplit(".", 1)[-1] + ".py", case.get("name", ""), outcome))
    return cases


def boot_and_test(tmp_path: Path, expected: tuple[str, ...], noiommu: bool = False) -> None:
    need_tool("qemu-system-x86_64", "qemu-system-x86")
    need_tool("debootstrap")
    need_tool("busybox", "busybox-static")
    need_root("building the lab image (debootstrap) and exporting it over 9p")
    if noiommu:  # vfio.ko is rebuilt from linux-source against the kernel's headers (lab/noiommu.py)
        need_tool("make")
        need_tool("gcc-12")
    image = ensure_image(lambda message: print(f"lab: {message}", file=sys.stderr), variant_noiommu=noiommu)
    command = [*GUEST_PYTEST, "--color=no", "--junitxml=/lab/run/junit.xml"]
    result = run(image, command, timeout=BOOT_AND_TEST_TIMEOUT_S, run_dir=tmp_path / "run")
    tail = "\n".join(result.console.splitlines()[-60:])
    assert not result.timed_out, f"the lab VM timed out\n{tail}"
    report = result.run_dir / "junit.xml"
    assert report.exists(), f"the guest wrote no test report (exit {result.exit_code})\n{tail}"
    cases = junit_cases(report)
    bad = [f"{file}::{name} {outcome}" for file, name, outcome in cases if outcome != "passed"]
    assert not bad and result.exit_code == 0, "in the lab VM:\n" + "\n".join(bad) + f"\n{tail}"
    ran = {file for file, _, _ in cases}
    assert set(expected) <= ran, f"not run in the guest: {set(expected) - ran}"


@pytest.mark.privileged
def test_the_lab_tests_pass_inside_the_vm(tmp_path: Path) -> None:
    boot_and_test(tmp_path, IOMMU_TESTS)


@pytest.mark.privileged
def test_the_noiommu_lab_tests_pass_inside_the_no_iommu_vm(tmp_path: Path) -> None:
    """The second boot: the e1000e in VFIO's no-IOMMU mode, a descriptor naming the kernel's memory."""
    boot_and_test(tmp_path, NOIOMMU_TESTS, noiommu=True)

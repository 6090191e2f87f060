"""Edge checks of sandbox/argtypes.py: finite bounded numbers, and output paths refused before any work."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from sandbox.argtypes import bounded_number, check_output_dir, check_output_path
from sandbox.errors import UsageError


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_a_float_flag_is_finite(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--bucket must be a finite number"):
        bounded_number(float, "--bucket", 1e-6, 1e9)(text)


NOBODY = 65534  # the unprivileged uid and gid of Debian's nobody/nogroup


def test_a_number_of_thousands_of_digits_is_refused_without_converting_it() -> None:
    with pytest.raises(
        argparse.ArgumentTypeError, match=r"--count must be an integer, got '99999.*\(5000 characters\)"
    ):
        bounded_number(int, "--count", 1, 10)("9" * 5000)


def test_bounds_and_bases() -> None:
    convert = bounded_number(int, "--seed", 0, 2**63 - 1)
    assert convert("0x10") == 16
    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and"):
        convert("-1")


def test_an_output_path_under_a_file_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match=f"--out {blocker}/a/b.json: {blocker} is a file, not a directory"):
        check_output_path(blocker / "a" / "b.json", "--out")


def test_an_output_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory, not a file"):
        check_output_path(tmp_path, "--pcap")
    with pytest.raises(UsageError, match="not a usable file name"):
        check_output_path("", "--pcap")


def test_missing_folders_are_fine_they_are_created_by_the_writer(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "new" / "deeper" / "x.pcap", "--pcap") == tmp_path / "new" / "deeper" / "x.pcap"
    assert check_output_dir(tmp_path / "out", "--out") == tmp_path / "out"
    with pytest.raises(UsageError, match="is a file, not a directory"):
        (tmp_path / "f").write_text("")
        check_output_dir(tmp_path / "f", "--out")


def test_an_unwritable_parent_is_named() -> None:
    """As root (CI) the check runs in a child that has dropped to nobody: root itself may write anywhere."""
    base = Path(tempfile.mkdtemp(prefix="nicsb-argtypes-"))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        if os.geteuid() != 0:
            with pytest.raises(UsageError, match=f"cannot create files in {locked}"):
                check_output_path(locked / "x", "--audit-log")
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: nobody, then the check, then its message down the pipe
            os.close(read)
            message = ""
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                check_output_path(locked / "x", "--audit-log")
            except UsageError as err:
                message = str(err)
            except BaseException as err:
                message = f"unexpected {type(err).__name__}: {err}"
            os.write(write, message.encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            message = pipe.read().decode()
        os.waitpid(pid, 0)
        assert f"cannot create files in {locked}" in message, message
    finally:
        shutil.rmtree(base)

"""The lab's initramfs: static busybox, lab/init.sh as /init, and the module closure.

Written as an uncompressed "newc" cpio archive (the format the kernel
unpacks, Documentation/driver-api/early-userspace/buffer-format.rst), in
Python so that the archive is byte-for-byte reproducible and no cpio tool
is needed.  Uncompressed, because under TCG the kernel's own gunzip of a
few megabytes costs more than QEMU's copy of them.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from lab.kernel import LabBuildError

NEWC_MAGIC = b"070701"
#: The newc header after the magic: thirteen fields, each eight ASCII hex digits, in this order.
NEWC_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor", "rdevmajor",
               "rdevminor", "namesize", "check")  # fmt: skip
NEWC_FIELD_DIGITS = 8
NEWC_HEADER_SIZE = len(NEWC_MAGIC) + NEWC_FIELD_DIGITS * len(NEWC_FIELDS)  # 110 bytes, then the name
#: Name and data each start on a 4-byte boundary; the archive ends padded to 512 bytes.
NEWC_ALIGN = 4
ARCHIVE_BLOCK = 512
TRAILER = "TRAILER!!!"


def busybox_path() -> Path:
    """The static busybox (Debian package busybox-static)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.exists():
            return path
    found = shutil.which("busybox")
    if found is None:
        raise LabBuildError("busybox is not installed (apt-get install busybox-static)")
    return Path(found)


class Cpio:
    """A newc archive built in memory: directories, files, symlinks and device nodes."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        """One header, name and data; owner root, mtime 0 (reproducible), no checksum."""
        values = {"ino": self._ino, "mode": mode, "nlink": 1, "filesize": len(data), "rdevmajor": rdev[0],
                  "rdevminor": rdev[1], "namesize": len(name) + 1}  # fmt: skip
        self._ino += 1
        header = NEWC_MAGIC + b"".join(b"%0*X" % (NEWC_FIELD_DIGITS, values.get(f, 0)) for f in NEWC_FIELDS)
        self._out += header + name.encode() + b"\0"
        self._out += b"\0" * (-len(self._out) % NEWC_ALIGN)
        self._out += data
        self._out += b"\0" * (-len(self._out) % NEWC_ALIGN)

    def directory(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path and path not in self._dirs:
                self._dirs.add(path)
                self._entry(path, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        if "/" in name:
            self.directory(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name.strip("/"), stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name.strip("/"), stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry(TRAILER, 0)
        self._out += b"\0" * (-len(self._out) % ARCHIVE_BLOCK)
        return bytes(self._out)


def build(init_script: str, module_tree: Path, release: str, boot: list[str], root: list[str]) -> bytes:
    """The archive: /init, /bin/busybox, /lib/modules/<release>/ and the two load-order lists.

    ``module_tree`` is a lib/modules/<release> folder holding only the closure
    (with depmod's indexes); ``boot``/``root`` are its paths in load order.
    """
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lab"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("init", init_script.encode(), 0o755)
    cpio.file("bin/busybox", busybox_path().read_bytes(), 0o755)
    for path in sorted(module_tree.rglob("*")):
        if path.is_file():
            cpio.file(f"lib/modules/{release}/{path.relative_to(module_tree)}", path.read_bytes())
    cpio.file("lab/modules.boot", "".join(f"{m}\n" for m in boot).encode())
    cpio.file("lab/modules.root", "".join(f"{m}\n" for m in root).encode())
    return cpio.finish()

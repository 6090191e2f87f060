"""The guest kernel: Debian's linux-image package, its uncompressed vmlinux and a module closure.

Debian's package ships a bzImage (vmlinuz) and the modules, but no
modules.dep (depmod runs at install time).  The closure of a module list is
therefore read from each module's own ``.modinfo`` section, the
``depends=`` key that modpost writes (scripts/mod/modpost.c, add_depends)
and depmod itself reads.

QEMU boots an ELF vmlinux with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY,
CONFIG_PVH=y in Debian's config) directly, skipping SeaBIOS's bzImage path,
which is about two seconds faster under TCG.  The vmlinux is the payload
of the bzImage: as scripts/extract-vmlinux does, find the compressor's
magic in the image and decompress from there (Debian builds with
CONFIG_KERNEL_XZ; gzip and zstd images are handled too).
"""

from __future__ import annotations

import lzma
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.spec import KERNEL_META

MODULE_SUFFIX = ".ko"
ELF_MAGIC = b"\x7fELF"
#: e_ident bytes that say "ELF64, little endian" (System V gABI, "ELF Identification").
EI_CLASS, ELFCLASS64 = 4, 2
EI_DATA, ELFDATA2LSB = 5, 1
#: Elf64_Ehdr and Elf64_Shdr (include/uapi/linux/elf.h), little endian: what a module's section table is read with.
ELF64_EHDR = np.dtype(
    [("e_ident", "V16"), ("e_type", "<u2"), ("e_machine", "<u2"), ("e_version", "<u4"), ("e_entry", "<u8"),
     ("e_phoff", "<u8"), ("e_shoff", "<u8"), ("e_flags", "<u4"), ("e_ehsize", "<u2"), ("e_phentsize", "<u2"),
     ("e_phnum", "<u2"), ("e_shentsize", "<u2"), ("e_shnum", "<u2"), ("e_shstrndx", "<u2")]
)  # fmt: skip
ELF64_SHDR = np.dtype(
    [("sh_name", "<u4"), ("sh_type", "<u4"), ("sh_flags", "<u8"), ("sh_addr", "<u8"), ("sh_offset", "<u8"),
     ("sh_size", "<u8"), ("sh_link", "<u4"), ("sh_info", "<u4"), ("sh_addralign", "<u8"), ("sh_entsize", "<u8")]
)  # fmt: skip
MODINFO_SECTION = b".modinfo"


class LabBuildError(Exception):
    """A build step failed; the message says which and why (one line)."""


# -- apt ----------------------------------------------------------------------------------


def _apt(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LabBuildError(f"{args[0]} not found: the lab builds from Debian packages (a Debian host)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabBuildError(f"{' '.join(args[:3])} failed: {last}")
    return done.stdout


def resolve_kernel() -> tuple[str, str]:
    """The kernel package apt offers (via linux-image-amd64) and its candidate version."""
    for attempt in range(2):
        depends = _apt(["apt-cache", "depends", KERNEL_META])
        found = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b", depends)
        if found:
            package = found.group(1)
            policy = _apt(["apt-cache", "policy", package])
            version = re.search(r"Candidate:\s*(\S+)", policy)
            if version and version.group(1) != "(none)":
                return package, version.group(1)
        if attempt == 0:
            _apt(["apt-get", "update", "-qq"])  # a fresh machine may have no package lists yet
    raise LabBuildError(f"apt offers no kernel through {KERNEL_META} (is this a Debian bookworm host?)")


def download_deb(package: str, version: str, into: Path) -> Path:
    """apt-get download, once: the .deb is kept in the cache."""
    into.mkdir(parents=True, exist_ok=True)
    existing = sorted(into.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
    if existing:
        return existing[0]
    _apt(["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{package}={version}"], cwd=into)
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        raise LabBuildError(f"apt-get download {package} produced no .deb")
    return found[-1]


def unpack_deb(deb: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    _apt(["dpkg-deb", "-x", str(deb), str(into)])


# -- vmlinux --------------------------------------------------------------------------------

#: Compressed payload magics, as scripts/extract-vmlinux tries them.
_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def extract_vmlinux(bzimage: Path) -> bytes:
    """The ELF kernel inside a bzImage: the first compressed stream that decompresses to an ELF."""
    data = bzimage.read_bytes()
    for magic, decompress in ((_XZ_MAGIC, _unxz), (_GZIP_MAGIC, _gunzip), (_ZSTD_MAGIC, _unzstd)):
        start = data.find(magic)
        while start >= 0:
            try:
                out = decompress(data[start:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, LabBuildError):
                out = b""
            if out.startswith(ELF_MAGIC):
                return out
            start = data.find(magic, start + 1)
    raise LabBuildError(f"no compressed ELF payload found in {bzimage.name}")


def _unxz(blob: bytes) -> bytes:
    return lzma.LZMADecompressor().decompress(blob)


def _gunzip(blob: bytes) -> bytes:
    # one gzip member; whatever follows it in the image (the rest of the bzImage) is left alone
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)


def _unzstd(blob: bytes) -> bytes:
    if shutil.which("zstd") is None:
        raise LabBuildError("zstd-compressed kernel but no zstd tool")
    return subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=False).stdout


# -- modules ----------------------------------------------------------------------------------


def module_name(path_or_name: str) -> str:
    """The kernel's module name: file stem with '-' as '_' (kernel/module/main.c treats them alike)."""
    name = Path(path_or_name).name
    return name.removesuffix(MODULE_SUFFIX).replace("-", "_")


def modinfo(ko: Path) -> dict[str, list[str]]:
    """The key=value strings of a module's .modinfo ELF section (ELF64 little endian)."""
    data = ko.read_bytes()
    if not data.startswith(ELF_MAGIC) or data[EI_CLASS] != ELFCLASS64 or data[EI_DATA] != ELFDATA2LSB:
        raise LabBuildError(f"{ko.name} is not a little-endian ELF64 module")
    header = np.frombuffer(data, ELF64_EHDR, count=1)[0]
    if int(header["e_shentsize"]) != ELF64_SHDR.itemsize:
        raise LabBuildError(f"{ko.name}: section headers of {int(header['e_shentsize'])} bytes, not Elf64_Shdr")
    sections = np.frombuffer(data, ELF64_SHDR, count=int(header["e_shnum"]), offset=int(header["e_shoff"]))
    str_off = int(sections["sh_offset"][int(header["e_shstrndx"])])
    info: dict[str, list[str]] = {}
    for name_off, offset, size in sections[["sh_name", "sh_offset", "sh_size"]].tolist():
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off : end] != MODINFO_SECTION:
            continue
        for entry in data[offset : offset + size].split(b"\0"):
            key, sep, value = entry.decode("utf-8", "replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # relative to lib/modules/<release>
    depends: tuple[str, ...]


def index_modules(tree: Path) -> dict[str, Path]:
    """Module name -> path relative to ``tree`` (lib/modules/<release>)."""
    return {module_name(ko.name): ko.relative_to(tree) for ko in tree.rglob(f"*{MODULE_SUFFIX}")}


def closure(tree: Path, wanted: tuple[str, ...]) -> list[Module]:
    """The modules ``wanted`` needs, dependencies first (the order insmod must follow)."""
    index = index_modules(tree)
    order: list[Module] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = module_name(name)
        if key in seen:
            return
        if key not in index:
            raise LabBuildError(
                f"module {name} is not in the kernel package (needed by {' <- '.join(chain) or 'the lab'})"
            )
        depends = tuple(d for v in modinfo(tree / index[key]).get("depends", []) for d in v.split(",") if d)
        for dep in depends:
            visit(dep, (*chain, key))
        seen.add(key)
        order.append(Module(key, index[key], tuple(module_name(d) for d in depends)))

    for name in wanted:
        visit(name, ())
    return order


def modules_dep(modules: list[Module]) -> str:
    """modules.dep text for a closure (depmod's format: path: every dependency path, nearest first)."""
    by_name = {m.name: m for m in modules}

    def all_deps(m: Module) -> list[str]:
        out: list[str] = []
        for dep in m.depends:
            for path in [str(by_name[dep].path), *all_deps(by_name[dep])]:
                if path not in out:
                    out.append(path)
        return out

    return "".join(f"{m.path}: {' '.join(all_deps(m))}".rstrip() + "\n" for m in modules)

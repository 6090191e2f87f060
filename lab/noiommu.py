"""vfio.ko with CONFIG_VFIO_NOIOMMU, rebuilt from Debian's own source against the guest kernel's headers.

Debian's 6.1 kernel is built without ``CONFIG_VFIO_NOIOMMU`` (its config
says ``# CONFIG_VFIO_NOIOMMU is not set``), so ``vfio.ko`` has no
``enable_unsafe_noiommu_mode`` parameter and no ``/dev/vfio/noiommu-N``.
The option only adds code inside vfio.ko (drivers/vfio/container.c, the
``vfio_noiommu_ops`` back end; drivers/vfio/vfio_main.c,
``vfio_noiommu_group_alloc``) and changes no structure another module sees
(drivers/vfio/vfio.h only turns ``vfio_noiommu`` from a constant into a
variable), so one module can be rebuilt alone, as an external module
(Documentation/kbuild/modules.rst):

- ``linux-source-6.1`` at the kernel package's exact version: only
  ``drivers/vfio/{vfio_main.c,container.c,iova_bitmap.c,vfio.h}``, the
  objects drivers/vfio/Makefile lists for ``vfio-y``;
- ``linux-headers-<release>`` (the kernel's .config, Module.symvers,
  generated headers), ``linux-headers-<abi>-common`` and ``linux-kbuild-6.1``
  (the kbuild scripts and modpost), unpacked with ``dpkg-deb -x``;
- ``make -C <headers> M=<dir> modules`` with a Kbuild file that defines
  ``CONFIG_VFIO_NOIOMMU`` for these objects only.

The result must load into the stock kernel next to the stock vfio-pci and
vfio_iommu_type1: the same ``vermagic`` (the headers' utsrelease and
config give it) and the same symbol CRCs (CONFIG_MODVERSIONS: genksyms
hashes each exported function's signature, which the option does not
touch).  Both are checked against the stock module and Module.symvers
before the module is kept.  The module is not signed; Debian's kernel
has ``CONFIG_MODULE_SIG_FORCE`` unset and no lockdown without EFI secure
boot, so it loads and taints the kernel (E), as the no-IOMMU mode taints
it anyway.

Cached as ``noiommu-<key>/vfio.ko``; the key hashes the kernel package,
the source files' list and the Kbuild text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from lab import kernel
from lab.kernel import LabBuildError, modinfo
from lab.spec import LabSpec, digest

#: drivers/vfio/Makefile: ``vfio-y += vfio_main.o iova_bitmap.o container.o``; vfio.h is their private header.
SOURCES = ("vfio_main.c", "iova_bitmap.c", "container.c", "vfio.h")
SOURCE_DIR = "drivers/vfio"
#: The module drivers/vfio/Makefile builds, with the one option Debian leaves out.
KBUILD = "obj-m := vfio.o\nvfio-y := vfio_main.o iova_bitmap.o container.o\nccflags-y := -DCONFIG_VFIO_NOIOMMU=1\n"
#: The module's path in lib/modules/<release>/ (where the stock one is, and the rebuilt one goes).
MODULE_PATH = "kernel/drivers/vfio/vfio.ko"
#: The parameter CONFIG_VFIO_NOIOMMU adds (drivers/vfio/container.c); its presence proves the option took.
NOIOMMU_PARAM = "enable_unsafe_noiommu_mode"
RECIPE = 1

Progress = Callable[[str], None]


def noiommu_key(spec: LabSpec) -> str:
    return digest([RECIPE, spec.kernel_key, SOURCES, KBUILD])


def packages(spec: LabSpec) -> list[str]:
    """The Debian packages the build needs, all at the kernel's own version."""
    release = spec.kernel_release  # 6.1.0-56-amd64
    abi = release.rsplit("-", 1)[0]  # 6.1.0-56
    series = ".".join(release.split(".")[:2])  # 6.1
    return [f"linux-headers-{release}", f"linux-headers-{abi}-common", f"linux-kbuild-{series}",
            f"linux-source-{series}"]  # fmt: skip


def build(spec: LabSpec, debs: Path, stock_tree: Path, target: Path, progress: Progress) -> Path:
    """Build vfio.ko with CONFIG_VFIO_NOIOMMU into ``target``/vfio.ko; ``stock_tree`` is lib/modules/<release>."""
    for tool in ("make", "strip"):
        if shutil.which(tool) is None:
            raise LabBuildError(f"{tool} not found: the no-IOMMU vfio.ko is built on this host (apt-get install make)")
    with tempfile.TemporaryDirectory(prefix="lab-noiommu-", dir=target.parent) as tmp:
        work = Path(tmp)
        unpacked = work / "debs"
        for package in packages(spec):
            progress(f"noiommu: apt-get download {package} {spec.kernel_version}")
            kernel.unpack_deb(kernel.download_deb(package, spec.kernel_version, debs), unpacked)
        headers = _headers(unpacked, spec.kernel_release)
        compiler = _compiler(headers)
        if shutil.which(compiler) is None:
            raise LabBuildError(f"{compiler} not found: the guest kernel's compiler (apt-get install {compiler})")
        src = work / "vfio"
        progress(f"noiommu: {', '.join(SOURCES)} from linux-source (the tarball is xz, about 10 s)")
        _extract_sources(unpacked, src)
        (src / "Kbuild").write_text(KBUILD)
        progress(f"noiommu: make -C linux-headers-{spec.kernel_release} M=... modules (CONFIG_VFIO_NOIOMMU=y)")
        done = subprocess.run(["make", "-C", str(headers), f"M={src}", "modules"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        built = src / "vfio.ko"
        if done.returncode != 0 or not built.exists():
            last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
            raise LabBuildError(f"building vfio.ko failed: {last}")
        _check(built, stock_tree / MODULE_PATH, headers / "Module.symvers", src / "Module.symvers")
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        # the stock modules carry no debug info either: 0.9 MB -> 90 KB in the initramfs
        stripped = subprocess.run(["strip", "--strip-debug", "-o", str(partial / "vfio.ko"), str(built)],
                                  capture_output=True, text=True, check=False)  # fmt: skip
        if stripped.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise LabBuildError(f"strip --strip-debug vfio.ko failed: {stripped.stderr.strip() or 'no output'}")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target / "vfio.ko"


def _headers(unpacked: Path, release: str) -> Path:
    """The unpacked linux-headers-<release>, its Makefile pointed at the unpacked -common tree.

    Debian's header Makefile is one line, ``include /usr/src/linux-headers-<abi>-common/Makefile``:
    an absolute path, here rewritten to the unpacked copy (the scripts/tools symlinks are relative)."""
    headers = unpacked / "usr" / "src" / f"linux-headers-{release}"
    makefile = headers / "Makefile"
    text = makefile.read_text()
    found = re.search(r"include\s+(/usr/src/(linux-headers-[^/\s]+-common))/Makefile", text)
    if found is None:
        raise LabBuildError(f"unexpected {makefile.name} in linux-headers-{release}: {text.strip()[:80]}")
    makefile.write_text(text.replace(found.group(1), str(unpacked / "usr" / "src" / found.group(2))))
    return headers


def _compiler(headers: Path) -> str:
    """The compiler the kernel was built with (.kernelvariables: ``CC = ... $(CROSS_COMPILE)gcc-12``)."""
    for line in (headers / ".kernelvariables").read_text().splitlines():
        if line.split("=")[0].strip() == "CC":
            return line.split()[-1].replace("$(CROSS_COMPILE)", "")
    return "gcc"


def _extract_sources(unpacked: Path, into: Path) -> None:
    tarballs = sorted((unpacked / "usr" / "src").glob("linux-source-*.tar.xz"))
    if not tarballs:
        raise LabBuildError("linux-source ships no linux-source-*.tar.xz")
    top = tarballs[0].name.removesuffix(".tar.xz")
    wanted = {f"{top}/{SOURCE_DIR}/{name}": name for name in SOURCES}
    into.mkdir(parents=True)
    with tarfile.open(tarballs[0], "r:xz") as tar:
        for member in tar:
            name = wanted.pop(member.name, None)
            if name is not None and member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                (into / name).write_bytes(source.read())
            if not wanted:
                break
    if wanted:
        raise LabBuildError(f"linux-source lacks {', '.join(sorted(wanted))}")


def _symvers(path: Path, module: str | None) -> dict[str, str]:
    """Module.symvers (crc, symbol, module, ...) as symbol -> crc, for one module's exports or all."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and (module is None or fields[2] == module):
            out[fields[1]] = fields[0]
    return out


def _check(built: Path, stock: Path, kernel_symvers: Path, built_symvers: Path) -> None:
    """Loadable into the stock kernel in place of the stock vfio.ko, and really the no-IOMMU build."""
    mine, theirs = modinfo(built), modinfo(stock)
    if mine.get("vermagic") != theirs.get("vermagic"):
        raise LabBuildError(f"vermagic {mine.get('vermagic')} is not the stock vfio.ko's {theirs.get('vermagic')}")
    if not any(p.startswith(f"{NOIOMMU_PARAM}:") for p in mine.get("parm", [])):
        raise LabBuildError(f"the rebuilt vfio.ko has no {NOIOMMU_PARAM} parameter: CONFIG_VFIO_NOIOMMU did not take")
    exported, expected = _symvers(built_symvers, None), _symvers(kernel_symvers, f"{SOURCE_DIR}/vfio")
    if exported != expected:
        differ = sorted(set(exported.items()) ^ set(expected.items()))[:3]
        raise LabBuildError(f"the rebuilt vfio.ko's exports differ from the kernel's Module.symvers: {differ}")

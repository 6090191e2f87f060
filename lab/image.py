"""Build the lab image once and keep it: each part cached under a hash of its own inputs.

Layout of the cache (lab/spec.py ``cache_root``)::

    debs/linux-image-6.1.0-N-amd64_*.deb   what apt-get download fetched
    kernel-<kernel key>/vmlinux             the PVH-bootable ELF kernel
    rootfs-<rootfs key>/                    debootstrap tree, exported read-only over 9p
    initramfs-<initramfs key>.cpio          busybox, /init, the module closure
    noiommu-<noiommu key>/vfio.ko           vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU (lab/noiommu.py)
    initramfs-noiommu-<key>.cpio            the same initramfs with that vfio.ko (the no-IOMMU variant)
    image-<image key>.json                  the manifest: paths, versions, build times

A part is built under a ``.partial`` name and renamed when complete, so an
interrupted build never leaves a part that looks finished.  A file lock
serialises builds (several test runs may start at once); runs need no lock,
since nothing a run reads is ever changed in place.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from lab import initramfs, kernel, noiommu, rootfs
from lab.kernel import LabBuildError
from lab.spec import LabSpec, cache_root, digest

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LabImage:
    """The three files QEMU needs, and the manifest that describes them."""

    key: str
    release: str
    vmlinux: Path
    initramfs: Path
    rootfs: Path
    manifest: Path
    #: The no-IOMMU variant: vfio.ko with CONFIG_VFIO_NOIOMMU in the initramfs; booted without a vIOMMU.
    noiommu: bool = False


def current_spec() -> LabSpec:
    """The spec of the image this machine would build now (asks apt which kernel it offers)."""
    package, version = kernel.resolve_kernel()
    return LabSpec(package, version)


def _paths(spec: LabSpec, root: Path) -> LabImage:
    return LabImage(
        key=spec.image_key,
        release=spec.kernel_release,
        vmlinux=root / f"kernel-{spec.kernel_key}" / "vmlinux",
        initramfs=root / f"initramfs-{spec.initramfs_key}.cpio",
        rootfs=root / f"rootfs-{spec.rootfs_key}",
        manifest=root / f"image-{spec.image_key}.json",
    )


def _noiommu_paths(spec: LabSpec, root: Path) -> tuple[Path, LabImage]:
    """Where the rebuilt vfio.ko goes, and the variant image (its own initramfs, the rest shared)."""
    module_dir = root / f"noiommu-{noiommu.noiommu_key(spec)}"
    base = _paths(spec, root)
    key = digest([spec.initramfs_key, noiommu.noiommu_key(spec)])
    return module_dir, replace(base, initramfs=root / f"initramfs-noiommu-{key}.cpio", noiommu=True)


def cached_image(spec: LabSpec | None = None, variant_noiommu: bool = False) -> LabImage | None:
    """The image (or its no-IOMMU variant) if every part of it is built, else None."""
    spec = spec or current_spec()
    image = _paths(spec, cache_root())
    if variant_noiommu:
        image = _noiommu_paths(spec, cache_root())[1]
    parts = (image.vmlinux, image.initramfs, image.rootfs / ".lab-complete", image.manifest)
    return image if all(p.exists() for p in parts) else None


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_image(progress: Progress, rebuild: bool = False, spec: LabSpec | None = None,
                 variant_noiommu: bool = False) -> LabImage:  # fmt: skip
    """The image for ``spec`` (default: what apt offers now), building the parts that are missing.

    ``variant_noiommu``: the no-IOMMU variant, whose initramfs carries vfio.ko rebuilt with
    CONFIG_VFIO_NOIOMMU (lab/noiommu.py; built here the first time, about 15 s)."""
    spec = spec or current_spec()
    root = cache_root()
    if not rebuild:
        found = cached_image(spec, variant_noiommu)
        if found is not None:
            return found
    with _build_lock(root):
        image = _paths(spec, root)
        timings: dict[str, float] = {}
        if rebuild:
            for part in (image.vmlinux.parent, image.rootfs):
                shutil.rmtree(part, ignore_errors=True)
            image.initramfs.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="lab-kernel-", dir=root) as tmp:
            unpacked: Path | None = None

            def kernel_tree() -> Path:
                nonlocal unpacked
                if unpacked is None:
                    progress(f"kernel: apt-get download {spec.kernel_package} {spec.kernel_version}")
                    deb = kernel.download_deb(spec.kernel_package, spec.kernel_version, root / "debs")
                    unpacked = Path(tmp) / "deb"
                    kernel.unpack_deb(deb, unpacked)
                return unpacked

            if not image.vmlinux.exists():
                start = time.monotonic()
                tree = kernel_tree()
                progress("kernel: extracting vmlinux from the bzImage (PVH boot)")
                vmlinux = kernel.extract_vmlinux(tree / "boot" / f"vmlinuz-{spec.kernel_release}")
                image.vmlinux.parent.mkdir(parents=True, exist_ok=True)
                partial = image.vmlinux.with_suffix(".partial")
                partial.write_bytes(vmlinux)
                partial.rename(image.vmlinux)
                timings["kernel"] = time.monotonic() - start
            if not (image.rootfs / ".lab-complete").exists():
                start = time.monotonic()
                _build_rootfs(spec, image.rootfs, progress)
                timings["rootfs"] = time.monotonic() - start
            if not image.initramfs.exists():
                start = time.monotonic()
                _build_initramfs(spec, kernel_tree(), image, progress)
                timings["initramfs"] = time.monotonic() - start
            if variant_noiommu:
                _ensure_noiommu(spec, root, kernel_tree, rebuild, progress)
        if timings or not image.manifest.exists():
            _write_manifest(spec, image, timings)
        if variant_noiommu:
            image = _noiommu_paths(spec, root)[1]
        progress(f"image {image.key}{' (no-IOMMU variant)' if image.noiommu else ''} ready in {root}")
        return image


def _ensure_noiommu(spec: LabSpec, root: Path, kernel_tree: Callable[[], Path], rebuild: bool,
                    progress: Progress) -> None:  # fmt: skip
    """The rebuilt vfio.ko and the variant's initramfs (the rest of the image is shared with the default)."""
    module_dir, variant = _noiommu_paths(spec, root)
    if rebuild:
        shutil.rmtree(module_dir, ignore_errors=True)
        variant.initramfs.unlink(missing_ok=True)
    if not (module_dir / "vfio.ko").exists():
        start = time.monotonic()
        stock = kernel_tree() / "lib" / "modules" / spec.kernel_release
        noiommu.build(spec, root / "debs", stock, module_dir, progress)
        progress(f"noiommu: vfio.ko built in {time.monotonic() - start:.1f} s")
    if not variant.initramfs.exists():
        _build_initramfs(spec, kernel_tree(), variant, progress, {noiommu.MODULE_PATH: module_dir / "vfio.ko"})


def _build_rootfs(spec: LabSpec, target: Path, progress: Progress) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    progress(f"rootfs: debootstrap --variant=minbase {spec.suite} + {len(spec.packages)} packages (about a minute)")
    log = target.with_name(target.name + ".log")
    try:
        rootfs.debootstrap(spec, partial, log, lambda line: progress(f"rootfs: {line}"))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a few hundred MB; debootstrap's log stays
        raise
    (partial / ".lab-complete").write_text(json.dumps(spec.describe(), indent=1))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _build_initramfs(spec: LabSpec, tree: Path, image: LabImage, progress: Progress,
                     replaced: dict[str, Path] | None = None) -> None:  # fmt: skip
    """``replaced``: module path (in lib/modules/<release>) -> the file to ship instead of the stock one."""
    modtree = tree / "lib" / "modules" / spec.kernel_release
    boot = kernel.closure(modtree, spec.boot_modules)
    everything = kernel.closure(modtree, spec.boot_modules + spec.root_modules)
    skip = {kernel.module_name(m) for m in spec.on_demand}
    boot_names = {m.name for m in boot}
    root_load = [m for m in everything if m.name not in boot_names and m.name not in skip]
    wanted = len(spec.root_modules) + len(spec.boot_modules)
    progress(f"initramfs: busybox, /init and {len(everything)} modules (the closure of {wanted})")
    # depmod (from the root file system's kmod) writes the indexes the guest's modprobe reads.
    stage_rel = Path("tmp") / f"lab-modules-{image.initramfs.stem}"
    stage = image.rootfs / stage_rel
    shutil.rmtree(stage, ignore_errors=True)
    dest = stage / "lib" / "modules" / spec.kernel_release
    try:
        for module in everything:
            (dest / module.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2((replaced or {}).get(str(module.path), modtree / module.path), dest / module.path)
        for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            if (modtree / name).exists():
                shutil.copy2(modtree / name, dest / name)
        (dest / "modules.dep").write_text(kernel.modules_dep(everything))
        done = subprocess.run(["chroot", str(image.rootfs), "/sbin/depmod", "-b", f"/{stage_rel}",
                               spec.kernel_release], capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise LabBuildError(f"depmod failed: {done.stderr.strip()}")
        archive = initramfs.build(spec.init_script, dest, spec.kernel_release,
                                  [str(m.path) for m in boot], [str(m.path) for m in root_load])  # fmt: skip
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # the staging folder lives in the shared root file system
    partial = image.initramfs.with_suffix(".partial")
    partial.write_bytes(archive)
    partial.rename(image.initramfs)


def _write_manifest(spec: LabSpec, image: LabImage, timings: dict[str, float]) -> None:
    data = {
        **spec.describe(),
        "release": image.release,
        "vmlinux": str(image.vmlinux),
        "initramfs": str(image.initramfs),
        "rootfs": str(image.rootfs),
        "installed": rootfs.installed_versions(image.rootfs, spec.packages),
        "build_seconds": {k: round(v, 1) for k, v in timings.items()},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    partial = image.manifest.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    partial.rename(image.manifest)

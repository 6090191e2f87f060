"""What the lab image is made of: kernel, modules, packages, init script; and the cache key of each part.

Every input that changes the image is listed here and nowhere else, so the
cache key (a hash of these inputs) changes exactly when the image must be
rebuilt.  The module list is the issue's: the 9p transport for the root
file system, vfio-pci with the type1 IOMMU back end, the e1000e, virtio-net
and soft-RoCE.  rdma_rxe allocates the "crc32" shash when a link is added
(drivers/infiniband/sw/rxe/rxe_icrc.c, rxe_icrc_init: crypto_alloc_shash),
so crc32_generic and crc32-pclmul are needed although no ``depends=`` of
the module names them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: The meta package whose dependency names the current 6.1 kernel ABI (linux-image-6.1.0-N-amd64).
KERNEL_META = "linux-image-amd64"

#: Loaded by the initramfs, before the root file system can be mounted (in this order after closure).
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
#: Installed in the root file system; modprobe'd after the switch (all but e1000e, loaded on demand).
ROOT_MODULES = (
    "virtio_net",
    "vfio-pci",
    "vfio_iommu_type1",
    "ib_uverbs",
    "rdma_rxe",
    "crc32_generic",
    "crc32-pclmul",
    "e1000e",
)
#: Modules the guest's init does not load at boot (the VFIO back end binds the 82574L to vfio-pci itself).
ON_DEMAND_MODULES = ("e1000e",)

#: debootstrap --variant=minbase --include: the issue's list plus what the project imports in the guest.
#: numpy comes from Debian (1.24): the guest runs the project from source (PYTHONPATH=/project), not pip.
#: No gcc: the verifier's compiled fast path is off in the guest (NIC_SANDBOX_FASTPATH=0), numpy checks run.
PACKAGES = (
    "python3",
    "python3-numpy",
    "python3-pytest",
    "python3-pyverbs",
    "rdma-core",
    "ibverbs-providers",
    "iproute2",
    "kmod",
    "python3-scapy",
    "python3-rich",
    "python3-cffi",
    "python3-hypothesis",  # property tests in the guest, as on the host (pyproject's dev extra)
    # debootstrap's resolver ignores virtual packages: python3-pycparser (of cffi) depends on
    # python3-ply-lex-3.10 and python3-ply-yacc-3.10, which only python3-ply provides.
    "python3-ply",
)

#: What lab/rootfs.py does to the debootstrap tree afterwards (part of the root file system's key).
#: Mount points the guest's init (init.sh) needs in the read-only tree: the project, the run's folder, the modules.
MOUNT_POINTS = ("project", "lab/run", "lib/modules")
#: Left by debootstrap, of no use in a read-only guest: emptied.
PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
HOSTNAME = "lab"

#: Bumped when the recipe of a part changes in a way its other inputs do not show.
ROOTFS_RECIPE = 1
INITRAMFS_RECIPE = 1

INIT_SCRIPT = Path(__file__).with_name("init.sh")


def cache_root() -> Path:
    """Where built images live: $NIC_SANDBOX_LAB_CACHE, else ~/.cache/nic-sandbox/lab."""
    env = os.environ.get("NIC_SANDBOX_LAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nic-sandbox" / "lab"


def digest(obj: object) -> str:
    """A short stable hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LabSpec:
    """The inputs of one image; ``kernel_package`` and ``kernel_version`` come from apt."""

    kernel_package: str  # linux-image-6.1.0-N-amd64
    kernel_version: str  # its Debian version, e.g. 6.1.192-2
    mirror: str = DEFAULT_MIRROR
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    boot_modules: tuple[str, ...] = BOOT_MODULES
    root_modules: tuple[str, ...] = ROOT_MODULES
    on_demand: tuple[str, ...] = ON_DEMAND_MODULES
    init_script: str = field(default_factory=lambda: INIT_SCRIPT.read_text())

    @property
    def kernel_release(self) -> str:
        """uname -r of the guest: the package name without its prefix."""
        return self.kernel_package.removeprefix("linux-image-")

    @property
    def kernel_key(self) -> str:
        return digest([self.kernel_package, self.kernel_version])

    @property
    def rootfs_key(self) -> str:
        return digest([ROOTFS_RECIPE, self.suite, self.mirror, sorted(self.packages), MOUNT_POINTS, PRUNE, HOSTNAME])

    @property
    def modules_key(self) -> str:
        return digest([self.kernel_key, self.boot_modules, self.root_modules])

    @property
    def initramfs_key(self) -> str:
        return digest([INITRAMFS_RECIPE, self.modules_key, self.on_demand, self.init_script, busybox_digest()])

    @property
    def image_key(self) -> str:
        return digest([self.rootfs_key, self.modules_key, self.initramfs_key])

    def describe(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("init_script")
        data["image_key"] = self.image_key
        return data


def busybox_digest() -> str:
    """Hash of the static busybox the initramfs is built from (a new busybox means a new initramfs)."""
    from lab.initramfs import busybox_path

    return hashlib.sha256(busybox_path().read_bytes()).hexdigest()[:16]

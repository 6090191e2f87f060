"""On the host, no VM: the pieces the lab image is built from, and the lab command line.

The initramfs writer, the module closure read from ELF .modinfo sections,
the vmlinux extraction, the cache keys, the guest command script, the QEMU
command line and the DMAR log parser are checked on small inputs made here.
"""

from __future__ import annotations

import gzip
import lzma
import stat
import struct
from pathlib import Path

import pytest

from lab import initramfs, kernel, qemu, spec
from lab.cli import main
from lab.guest.kmsg import BEYOND_MGAW, READ_NOT_SET, WRITE_NOT_SET, parse_faults
from lab.image import LabImage
from lab.run import command_script
from lab.spec import LabSpec, cache_root
from tests.needs import need_tool

PROJECT = Path(__file__).resolve().parents[2]


# -- initramfs --------------------------------------------------------------------------------


def read_newc(archive: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc cpio archive (the format the kernel unpacks)."""
    entries: dict[str, tuple[int, bytes]] = {}
    magic, digits, align = len(initramfs.NEWC_MAGIC), initramfs.NEWC_FIELD_DIGITS, initramfs.NEWC_ALIGN
    pos = 0
    while True:
        assert archive[pos : pos + magic] == initramfs.NEWC_MAGIC
        at = pos + magic
        values = [int(archive[at + digits * i : at + digits * (i + 1)], 16) for i in range(len(initramfs.NEWC_FIELDS))]
        fields = dict(zip(initramfs.NEWC_FIELDS, values, strict=True))
        mode, size, namesize = fields["mode"], fields["filesize"], fields["namesize"]
        name_at = pos + initramfs.NEWC_HEADER_SIZE
        name = archive[name_at : name_at + namesize - 1].decode()
        data_at = name_at + namesize + (-(name_at + namesize) % align)
        if name == initramfs.TRAILER:
            return entries
        entries[name] = (mode, archive[data_at : data_at + size])
        pos = data_at + size + (-(data_at + size) % align)


def test_cpio_holds_directories_files_and_device_nodes() -> None:
    cpio = initramfs.Cpio()
    cpio.file("lab/a/b.txt", b"hello")
    cpio.char_device("dev/console", 5, 1)
    cpio.symlink("bin/sh", "busybox")
    archive = cpio.finish()
    assert initramfs.NEWC_HEADER_SIZE == 110  # buffer-format.rst: a 6-byte magic and 13 fields of 8 hex digits
    assert len(archive) % 512 == 0
    entries = read_newc(archive)
    assert entries["lab/a/b.txt"] == (stat.S_IFREG | 0o644, b"hello")
    assert stat.S_ISDIR(entries["lab/a"][0]) and stat.S_ISDIR(entries["lab"][0])
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert entries["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")


def test_initramfs_has_init_busybox_modules_and_load_order(tmp_path: Path) -> None:
    need_tool("busybox", "busybox-static")
    tree = tmp_path / "modules"
    (tree / "kernel").mkdir(parents=True)
    (tree / "kernel" / "a.ko").write_bytes(b"A")
    archive = initramfs.build("#!/bin/sh\necho hi\n", tree, "6.1.0-test", ["kernel/a.ko"], [])
    entries = read_newc(archive)
    assert entries["init"][1].startswith(b"#!/bin/sh")
    assert entries["init"][0] & 0o111
    assert entries["bin/busybox"][1][:4] == kernel.ELF_MAGIC
    assert entries["lib/modules/6.1.0-test/kernel/a.ko"][1] == b"A"
    assert entries["lab/modules.boot"][1] == b"kernel/a.ko\n"


# -- modules -----------------------------------------------------------------------------------


def fake_module(path: Path, modinfo: dict[str, str]) -> None:
    """A minimal ELF64 relocatable with a .modinfo section, as modpost writes one."""
    info = b"".join(f"{k}={v}\0".encode() for k, v in modinfo.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    body = info + shstrtab
    shoff = 64 + len(body)
    header = kernel.ELF_MAGIC + bytes([2, 1, 1]) + bytes(9)  # ELF64, little endian, version 1
    header += struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)

    def section(name: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, offset, size, 0, 0, 1, 0)

    sections = bytes(64) + section(1, 64, len(info)) + section(10, 64 + len(info), len(shstrtab))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body + sections)


def test_modinfo_and_the_closure_put_dependencies_first(tmp_path: Path) -> None:
    fake_module(tmp_path / "kernel/net/9pnet.ko", {"license": "GPL", "depends": ""})
    fake_module(tmp_path / "kernel/fs/netfs.ko", {"depends": ""})
    fake_module(tmp_path / "kernel/fs/9p.ko", {"depends": "9pnet,netfs", "alias": "fs-9p"})
    fake_module(tmp_path / "kernel/vfio/vfio-pci.ko", {"depends": "9pnet"})
    assert kernel.modinfo(tmp_path / "kernel/fs/9p.ko")["alias"] == ["fs-9p"]
    order = kernel.closure(tmp_path, ("9p", "vfio_pci"))  # '-' and '_' name the same module
    assert [m.name for m in order] == ["9pnet", "netfs", "9p", "vfio_pci"]
    dep = kernel.modules_dep(order)
    assert "kernel/fs/9p.ko: kernel/net/9pnet.ko kernel/fs/netfs.ko\n" in dep
    assert "kernel/net/9pnet.ko:\n" in dep
    with pytest.raises(kernel.LabBuildError, match="not in the kernel package"):
        kernel.closure(tmp_path, ("rdma_rxe",))


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress], ids=["xz", "gzip"])
def test_vmlinux_is_the_compressed_elf_inside_the_bzimage(tmp_path: Path, compress: object) -> None:
    elf = kernel.ELF_MAGIC + bytes(range(256)) * 64
    image = tmp_path / "vmlinuz"
    image.write_bytes(b"MZ setup code \x1f\x8b\x08 not a stream" + compress(elf) + b"trailer")  # type: ignore[operator]
    assert kernel.extract_vmlinux(image) == elf


# -- the spec, the guest command, QEMU ----------------------------------------------------------


def test_cache_keys_change_with_their_inputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = LabSpec("linux-image-6.1.0-56-amd64", "6.1.192-2")
    assert base.kernel_release == "6.1.0-56-amd64"
    newer = LabSpec("linux-image-6.1.0-57-amd64", "6.1.200-1")
    more = LabSpec(base.kernel_package, base.kernel_version, packages=(*base.packages, "strace"))
    init = LabSpec(base.kernel_package, base.kernel_version, init_script=base.init_script + "\n# changed\n")
    assert newer.kernel_key != base.kernel_key
    assert more.rootfs_key != base.rootfs_key and more.kernel_key == base.kernel_key
    assert init.rootfs_key == base.rootfs_key
    rootfs_key = base.rootfs_key
    for recipe, value in (("MOUNT_POINTS", (*spec.MOUNT_POINTS, "srv")), ("PRUNE", spec.PRUNE[:-1])):
        with monkeypatch.context() as patched:  # what lab/rootfs.py does after debootstrap is an input too
            patched.setattr(spec, recipe, value)
            assert base.rootfs_key != rootfs_key, recipe
    monkeypatch.setenv("NIC_SANDBOX_LAB_CACHE", str(tmp_path))
    assert cache_root() == tmp_path


def test_image_and_initramfs_keys_cover_kernel_and_init_script() -> None:
    """The initramfs key hashes the busybox binary it packs, so it needs busybox to exist."""
    need_tool("busybox", "busybox-static")
    base = LabSpec("linux-image-6.1.0-56-amd64", "6.1.192-2")
    newer = LabSpec("linux-image-6.1.0-57-amd64", "6.1.200-1")
    init = LabSpec(base.kernel_package, base.kernel_version, init_script=base.init_script + "\n# changed\n")
    assert newer.image_key != base.image_key
    assert init.initramfs_key != base.initramfs_key


def test_command_script_runs_in_the_project_and_quotes_argv() -> None:
    script = command_script(["python3", "-c", "print('a b')"], {"FOO": "x y"})
    assert "cd /project\n" in script
    assert "export FOO='x y'\n" in script
    assert script.rstrip().endswith("python3 -c 'print('\"'\"'a b'\"'\"')'")
    assert command_script("echo $HOME").rstrip().endswith("echo $HOME")  # one string: a shell line


def test_qemu_command_line_has_the_iommu_before_the_devices(tmp_path: Path) -> None:
    image = LabImage("k", "6.1.0", tmp_path / "vmlinux", tmp_path / "initrd", tmp_path / "rootfs", tmp_path / "m")
    argv = qemu.command(image, PROJECT, tmp_path / "run", qemu.VmConfig())
    line = " ".join(argv)
    assert "-accel tcg,thread=multi" in line and "q35,kernel-irqchip=split" in line
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices[0] == "intel-iommu,intremap=on,caching-mode=on"
    assert devices[1].startswith("e1000e,") and "netdev" not in devices[1]  # nothing it sends leaves QEMU
    assert "user,id=rxenet,restrict=on" in argv
    assert f"local,id=rootfs,path={tmp_path / 'rootfs'},security_model=none,readonly=on" in argv
    assert "intel_iommu=on" in argv[argv.index("-append") + 1]


# -- the kernel log ------------------------------------------------------------------------------

DMESG = """\
[   26.242327] DMAR: DRHD: handling fault status reg 2
[   26.244622] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x7000 [fault reason 0x06] PTE Read access is not set
[   30.044092] DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x9000 [fault reason 0x05] PTE Write access is not set
[   33.953103] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0xfffffffffffff000 [fault reason 0x04] Access beyond MGAW
"""  # noqa: E501  (the kernel's own lines, as the lab printed them)


def test_dmar_fault_lines_are_parsed() -> None:
    faults = parse_faults(DMESG)
    assert [(f.write, f.addr, f.reason) for f in faults] == [
        (False, 0x7000, READ_NOT_SET),
        (True, 0x9000, WRITE_NOT_SET),
        (False, 0xFFFF_FFFF_FFFF_F000, BEYOND_MGAW),
    ]
    assert faults[0].device == "00:02.0" and faults[0].text == "PTE Read access is not set"


# -- the command line ------------------------------------------------------------------------------


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "python -m lab run -- uname -r" in out and "python -m lab shell" in out


BAD_INPUT = [
    (("run",), "run needs a command"),
    (("run", "--timeout", "-3", "--", "true"), "must be a positive number"),
    (("test", "--timeout", "nan"), "must be a positive number"),
    (("run", "--memory", "lots", "--", "true"), "expected a size such as 1G"),
    (("boot",), "invalid choice"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lab.image.current_spec", lambda: pytest.fail("bad input must be refused before any build"))
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1

"""The lab: a small Linux VM under QEMU with a real (emulated) VT-d IOMMU, an e1000e and soft-RoCE.

This machine's kernel has neither VFIO nor RDMA; a Debian 6.1 guest under
QEMU has both.  ``python -m lab`` builds the guest (kernel, module closure,
a debootstrap root file system exported read-only over virtio-9p, and a
busybox initramfs), boots it and runs one command inside it with the
project mounted read-write at /project.  See docs/lab.md.

Host side: spec.py (the inputs and their cache key), kernel.py, rootfs.py,
initramfs.py, image.py (build and cache), qemu.py (the command line),
run.py (boot, stream, timeout, result), cli.py.  Guest side, in lab/guest/:
env.py (facts a test inside the VM asks about: am I in the lab, the kernel
log), world.py (the project's kernel in front of the real e1000e: a VFIO
back end for the one builder), attacks.py, demo.py and noiommu.py.
"""

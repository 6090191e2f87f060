#!/bin/busybox sh
# PID 1 of the lab VM, packed into the initramfs by lab/initramfs.py.
#
# It stays in the initramfs for the whole boot: it loads the module closure,
# mounts the read-only 9p root file system at /newroot with tmpfs where
# Debian writes, mounts the project (/project) and this run's folder
# (/lab/run) read-write, sets up the rxe link, runs /lab/run/command.sh in
# a chroot with the serial line as its controlling terminal, then writes the
# exit code and the kernel log into /lab/run and powers off.
/bin/busybox --install -s /bin
export PATH=/bin
R=/newroot
RUN=$R/lab/run
say() { echo "lab-init: $*" > /dev/console; }
halt() { sync; umount -a -r 2>/dev/null; poweroff -f; sleep 5; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
hostname lab

MODDIR=/lib/modules/$(uname -r)
# insmod, unlike modprobe (libkmod reads /proc/cmdline), does not apply "module.param=value" from the
# kernel command line to a loadable module: pass them here (vfio.enable_unsafe_noiommu_mode=1, say).
params() {
    n=$(basename "$1" .ko | tr - _)
    for w in $(cat /proc/cmdline); do case "$w" in "$n".*=*) echo "${w#"$n".}" ;; esac; done
}
load() { insmod "$MODDIR/$1" $(params "$1") || say "insmod $1 failed"; }
for m in $(cat /lab/modules.boot); do load "$m"; done

P9="trans=virtio,version=9p2000.L,msize=262144"
mount -t 9p -o "$P9,ro,cache=loose" rootfs $R || { say "cannot mount the root file system (9p tag rootfs)"; halt; }
mount -t 9p -o "$P9" labrun $RUN || { say "cannot mount the run folder (9p tag labrun)"; halt; }
mount -t 9p -o "$P9,cache=loose" project $R/project || say "cannot mount the project (9p tag project)"
for d in tmp run var/tmp root var/lib/dhcp; do mount -t tmpfs -o mode=1777 tmpfs "$R/$d" 2>/dev/null; done
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/shm $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount --bind /lib/modules $R/lib/modules

# The rest of the closure (vfio-pci, rxe, virtio-net, ...), dependencies first; e1000e stays on demand.
for m in $(cat /lab/modules.root); do load "$m"; done

# virtio-net carries soft-RoCE: an address in 198.18.0.0/15 and the rxe0 link on it.
ip link set lo up
VNET=
for dev in /sys/class/net/*; do
    drv=$(readlink "$dev/device/driver" 2>/dev/null)
    [ "${drv##*/}" = virtio_net ] && VNET=${dev##*/}
done
RXE=
if [ -n "$VNET" ]; then
    ip link set "$VNET" up
    ip addr add 198.18.6.2/24 dev "$VNET"
    chroot $R /usr/bin/rdma link add rxe0 type rxe netdev "$VNET" && RXE=rxe0 || say "rdma link add rxe0 failed"
fi

chroot $R /usr/bin/env -i \
    HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/project PYTHONDONTWRITEBYTECODE=1 NIC_SANDBOX_FASTPATH=0 \
    NIC_SANDBOX_LAB=1 LAB_RUN_DIR=/lab/run LAB_RXE_DEVICE="$RXE" LAB_RXE_NETDEV="$VNET" \
    /usr/bin/setsid -c -w /bin/sh /lab/run/command.sh < $R/dev/ttyS0 > $R/dev/ttyS0 2>&1
echo $? > $RUN/exit_code
cat /proc/uptime > $RUN/uptime.end
dmesg > $RUN/dmesg.txt
umount $RUN
umount $R/project
halt

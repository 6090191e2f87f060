"""Machine reset: put a built world back exactly as it was when ``Snapshot.take`` ran, in place.

Why: the fuzzer's operation-sequence attacks (use-after-unpin, interleave,
a ring overrun) each need the machine as the generator aimed at it, and a
fresh ``World.build`` costs ~14 ms -- more than a thousand doorbells' worth of
checking.  A real machine does the same thing for the same reason: a reset
(PCI function level reset, CTRL.RST on the 8254x, a kernel reboot into a
known image) rather than new hardware.

What "exactly" means.  Everything reachable from the roots (the world, and
whatever the caller keeps next to it: the fuzzer's arena and oracle) is put
back *in place*, so every reference anyone holds stays valid -- the compiled
fast path holds raw pointers into numpy arrays, the devices hold the kernel's
interrupt lines, the cables hold the oracle's taps:

- every object's attributes (``__dict__``) are set back to the objects they
  named, and every list, dict, set and deque back to its members: whatever an
  attack created (pins, mappings, queue entries, log lines) is unreachable again;
- every numpy array gets its bytes back (``np.copyto``), whatever views of it
  an attack took;
- DRAM (``PhysicalMemory.data``, 64 MiB) is restored where it can differ from
  the snapshot, not copied whole.  A DMA observer hung on every NIC before
  the snapshot notes the frames devices wrote.  The frames after the kernel's
  seeded image up to the last frame in use at the snapshot (rings, pinned
  buffers, shadow rings: what CPUs write) are copied back whole; frames of the
  seeded image only where a device wrote (no tenant maps it, and the kernel's
  own structures live in allocated frames); any frame beyond the prefix that
  is in use now or that a device wrote is zeroed -- it was free, and free
  frames are zero (``PhysicalMemory.alloc`` and ``free`` scrub).  Every other
  byte could only change through a write to a frame nobody owned, which no
  actor does; tests/world/test_reset.py compares all of DRAM with a fresh
  machine's after attacks of every class in every mode.

What is left alone: objects passed as ``keep`` (the audit sink, which outlives
machines and counts across a campaign), locks, modules, classes, functions
(their closures name objects reached through the roots anyway), C objects
(cffi pointers: they point at arrays restored in place), immutable values,
and *scratch* arrays (``SCRATCH``): the compiled engines' staging buffers,
every byte of which the C writes before it reads it within one call, so
their contents between calls are no state (a fresh machine's zeros and a
used machine's leftovers give the same results).  They are 15 of the 18 MB
a machine's arrays hold, so leaving them is what makes a reset cost about
0.5 ms instead of 3 ms (an operation-sequence class resets before every attack).
Only the emulated back end can be reset (its devices' state is Python's);
QEMU's and VFIO's devices live outside this process.
"""

from __future__ import annotations

import enum
import threading
import types
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from device.dma import DmaBatch
from ring.memory import OWNER_FREE, PAGE_SHIFT, PhysicalMemory
from world.build import World
from world.emulated import Emulated
from world.virtio import EmulatedVirtio

#: Values restored as they are: immutable, or not this process's to restore.
_ATOMIC = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    type,
    range,
    slice,
    enum.Enum,
    np.generic,
    np.dtype,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    type(threading.Lock()),
    type(threading.RLock()),
)


#: Scratch arrays, by the attribute that holds them: ``(module, class) -> attribute names``.  Each is a staging
#: buffer the compiled engine fills before it reads it in the same call (device/fastdev.c: ``tx_burst_gather``
#: writes ``out[:total]`` and ``out_len[:n]`` and Python copies just those; ``rx_burst_scatter`` writes the ``n``
#: fetched descriptors and addresses into ``snap`` first; driver/tenant/rxq.py's compiled reap fills ``_out`` and
#: ``_out_len`` likewise).  A class may also declare its own as ``RESET_SCRATCH`` (a tuple of attribute names).
SCRATCH: dict[tuple[str, str], frozenset[str]] = {
    ("device.tx_engine", "TxEngine"): frozenset({"_out", "_out_len"}),
    ("device.rx_engine", "RxEngine"): frozenset({"_snap"}),
    ("driver.tenant.rxq", "RxQueue"): frozenset({"_out", "_out_len"}),
}


def scratch_names(obj: object) -> frozenset[str]:
    """The attributes of ``obj`` that hold scratch arrays (``SCRATCH``, or the class's ``RESET_SCRATCH``)."""
    kind = type(obj)
    declared = getattr(kind, "RESET_SCRATCH", ())
    return SCRATCH.get((kind.__module__, kind.__qualname__), frozenset()) | frozenset(declared)


class DirtyFrames:
    """A DMA observer that notes the frames every device write touched (folded into a mask when read)."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self._writes: list[tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]] = []

    def __call__(self, batch: DmaBatch) -> None:
        if batch.direction != "write":
            return
        live = batch.allowed & (batch.lengths > 0)
        if bool(live.any()):
            self._writes.append((batch.phys[live], batch.lengths[live]))

    def take(self) -> npt.NDArray[np.bool_]:
        """Frames written since the last call (a mask over all frames); forgets them."""
        mask = np.zeros(self.frames + 1, dtype=np.int64)
        for phys, length in self._writes:
            first = (phys >> np.uint64(PAGE_SHIFT)).astype(np.int64)
            last = ((phys + (length - 1).astype(np.uint64)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
            np.add.at(mask, np.minimum(first, self.frames), 1)
            np.add.at(mask, np.minimum(last + 1, self.frames), -1)
        self._writes.clear()
        return np.cumsum(mask)[: self.frames] > 0


class Snapshot:
    """The state of a built world and its companions, restorable in place (see the module docstring).

    ``Snapshot(world)`` hangs a ``DirtyFrames`` observer on every NIC's DMA engine; ``take`` records the state
    (call it once the machine is as every reset should find it); ``reset`` puts it back, as often as needed.
    The snapshot may be kept in one of the roots (the arena does): it is never part of what it restores.
    """

    def __init__(self, world: World[Emulated] | World[EmulatedVirtio]) -> None:
        if not isinstance(world.backend, Emulated | EmulatedVirtio):
            raise TypeError(f"only the emulated back end can be reset, not {type(world.backend).__name__}")
        self.world = world
        self.memory: PhysicalMemory = world.memory
        self.dirty = DirtyFrames(self.memory.frames)
        for dev in world.backend.nics.values():
            dev.dma.observers.append(self.dirty)
        self.prefix: npt.NDArray[np.uint8] = self.memory.data[:0].copy()
        self.objects: list[tuple[Any, dict[str, Any]]] = []
        self.lists: list[tuple[list[Any], list[Any]]] = []
        self.dicts: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
        self.sets: list[tuple[set[Any], set[Any]]] = []
        self.deques: list[tuple[deque[Any], list[Any]]] = []
        self.arrays: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]] = []
        #: scratch arrays met (``SCRATCH``): left as they are by ``reset``
        self.scratch: list[npt.NDArray[Any]] = []
        #: types met that have no attributes to restore and are not known immutable (C objects: cffi pointers)
        self.opaque: set[str] = set()
        self.taken = False
        self.resets = 0

    def take(self, roots: Iterable[object] = (), keep: Iterable[object] = ()) -> Snapshot:
        """Record the world and ``roots``; objects in ``keep`` (and what only they reach) are never touched."""
        memory = self.memory
        in_use = np.flatnonzero(memory.owner != OWNER_FREE)
        end = (int(in_use[-1]) + 1) << PAGE_SHIFT if in_use.size else 0
        self.prefix = memory.data[:end].copy()
        self.dirty.take()  # what devices wrote before now is in the prefix or was scrubbed
        skip = {id(k) for k in keep} | {id(memory.data), id(self), id(self.dirty)}
        self._walk([self.world, *roots], skip)
        self.taken = True
        return self

    def _walk(self, roots: list[object], skip: set[int]) -> None:
        seen: set[int] = set(skip)
        bases: set[int] = set()
        data = self.memory.data
        stack = list(roots)
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, _ATOMIC):
                continue
            seen.add(id(obj))
            if isinstance(obj, np.ndarray):
                base = _root(obj)
                if base is data or id(base) in bases:
                    continue
                if isinstance(base, np.ndarray) and base.flags.writeable:
                    bases.add(id(base))
                    self.arrays.append((base, base.copy()))
                elif obj.flags.writeable:  # a view of foreign memory (an mmap): its own bytes
                    self.arrays.append((obj, obj.copy()))
                continue
            if isinstance(obj, list):
                self.lists.append((obj, list(obj)))
                stack.extend(obj)
            elif isinstance(obj, dict):
                self.dicts.append((obj, dict(obj)))
                stack.extend(obj.keys())
                stack.extend(obj.values())
            elif isinstance(obj, set):
                self.sets.append((obj, set(obj)))
                stack.extend(obj)
            elif isinstance(obj, deque):
                self.deques.append((obj, list(obj)))
                stack.extend(obj)
            elif isinstance(obj, tuple | frozenset):
                stack.extend(obj)
            elif isinstance(obj, types.MethodType):
                stack.append(obj.__self__)
            else:
                state = getattr(obj, "__dict__", None)
                slots = _slots(type(obj))
                if isinstance(state, dict):
                    self.objects.append((obj, dict(state)))
                    scratch = scratch_names(obj)
                    for name in scratch:
                        value = state.get(name)
                        if isinstance(value, np.ndarray) and id(value) not in seen:
                            seen.add(id(value))  # walked no further: never copied, never restored
                            self.scratch.append(value)
                    stack.extend(value for name, value in state.items() if name not in scratch)
                elif not slots:
                    self.opaque.add(f"{type(obj).__module__}.{type(obj).__qualname__}")
                if slots:
                    raise TypeError(f"cannot reset {type(obj).__qualname__}: it has __slots__ {slots}")

    def reset(self) -> None:
        """Put everything back (see the module docstring); the snapshot stays valid for the next reset."""
        if not self.taken:
            raise RuntimeError("reset before take: nothing recorded yet")
        memory = self.memory
        end = self.prefix.size
        # frames in use now beyond the prefix were free at the snapshot: zero (read before the owners go back)
        used = np.flatnonzero(memory.owner[end >> PAGE_SHIFT :] != OWNER_FREE) + (end >> PAGE_SHIFT)
        for first, stop in _runs_of(used):
            memory.data[first << PAGE_SHIFT : stop << PAGE_SHIFT] = 0
        for obj, state in self.objects:
            attrs = obj.__dict__  # no comparison first: values may be arrays, whose == is not a truth value
            attrs.clear()
            attrs.update(state)
        for lst, items in self.lists:
            lst[:] = items
        for dct, content in self.dicts:
            dct.clear()
            dct.update(content)
        for st, members in self.sets:
            st.clear()
            st.update(members)
        for dq, queued in self.deques:
            dq.clear()
            dq.extend(queued)
        for array, saved in self.arrays:
            np.copyto(array, saved)
        # the kernel's seeded image changes only where a device wrote (nothing else maps it): those frames back;
        # the rest of the prefix (rings, pins, buffers: what CPUs write) whole; written frames beyond it zeroed
        seeded = min(memory.kernel_frames.count << PAGE_SHIFT, end)
        memory.data[seeded:end] = self.prefix[seeded:]
        written = self.dirty.take()
        for first, stop in _runs(written[: seeded >> PAGE_SHIFT]):
            lo, hi = first << PAGE_SHIFT, stop << PAGE_SHIFT
            memory.data[lo:hi] = self.prefix[lo:hi]
        written[: end >> PAGE_SHIFT] = False
        for first, stop in _runs(written):
            memory.data[first << PAGE_SHIFT : stop << PAGE_SHIFT] = 0
        self.resets += 1


def _root(array: npt.NDArray[Any]) -> object:
    """The object that owns an array's bytes: the last ndarray of its ``base`` chain, or what that one wraps."""
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def _slots(kind: type) -> list[str]:
    names = (name for k in kind.__mro__ for name in getattr(k, "__slots__", ()))
    return [name for name in names if name not in ("__dict__", "__weakref__")]


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[first, stop)`` of each run of True in ``mask``."""
    return _runs_of(np.flatnonzero(mask))


def _runs_of(index: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """``[first, stop)`` of each run of consecutive numbers in sorted ``index``."""
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1)
    firsts = np.concatenate(([index[0]], index[breaks + 1]))
    lasts = np.concatenate((index[breaks], [index[-1]]))
    return list(zip(firsts.tolist(), (lasts + 1).tolist(), strict=True))

"""The oracle's liveness check: every step ends in bounded work (no hang, no unbounded loop on a chain).

Judged from the hardware's side only: the device work counted on the DMA
observer hook (``Work``) against a ``Budget``, and a wall-clock deadline
that interrupts a step still running (``bounded_step``).  An exception from
the kernel or the device is a ``crash``: the machine must answer hostile
input with a verdict, never by crashing.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fuzz.oracle.escape import Escape
from ring.descriptors import DESC_SIZE

if TYPE_CHECKING:
    from fuzz.oracle.judge import DmaBatchLike, Oracle


#: TDLEN/RDLEN keep bits 19:7, so no e1000 ring holds more descriptors than this.
HW_MAX_RING = 0x000F_FF80 // DESC_SIZE


@dataclass
class Work:
    """Device work since the last ``reset``, counted on the DMA observer hook."""

    batches: int = 0
    nbytes: int = 0
    #: descriptors in the largest single descriptor fetch (a kick fetches its whole window in one batch)
    max_fetch: int = 0

    def count(self, batch: DmaBatchLike) -> None:
        self.batches += 1
        n = int(batch.lengths.sum())
        self.nbytes += n
        if batch.purpose.endswith("-desc") and n // DESC_SIZE > self.max_fetch:
            self.max_fetch = n // DESC_SIZE

    def reset(self) -> None:
        self.batches = self.nbytes = self.max_fetch = 0


@dataclass(frozen=True)
class Budget:
    """Bounded work for one step: what a device and the kernel may spend answering one operation."""

    ring: int = HW_MAX_RING  # descriptors one kick may fetch: never more than a ring
    dma_batches: int = 256  # DMA batches in one step
    dma_bytes: int = 64 << 20  # bytes the devices tried to move in one step
    seconds: float = 5.0  # wall clock; a step still running then is interrupted (main thread) and reported

    def judge(self, work: Work, elapsed: float) -> list[Escape]:
        found = []
        if work.max_fetch > self.ring:
            found.append(Escape("liveness", f"one kick fetched {work.max_fetch} descriptors (ring {self.ring})"))
        if work.batches > self.dma_batches:
            found.append(Escape("liveness", f"{work.batches} DMA batches in one step (budget {self.dma_batches})"))
        if work.nbytes > self.dma_bytes:
            found.append(Escape("liveness", f"{work.nbytes} DMA bytes in one step (budget {self.dma_bytes})"))
        if elapsed > self.seconds:
            found.append(Escape("liveness", f"step took {elapsed:.3f} s (budget {self.seconds:g} s)"))
        return found


DEFAULT_BUDGET = Budget()


class StepOverrun(BaseException):
    """Raised inside a step that outlived its budget (a BaseException: ``except Exception`` cannot eat it)."""


#: Whether the step alarm's handler (``_fire``, installed by ``alarm_scope``) raises: only while a step runs.
_armed = [False]
#: Whether ``alarm_scope`` has installed ``_fire`` (a flag: ``signal.getsignal`` costs ~13 us, an enum lookup that
#: fails for a Python handler)
_scoped = [False]


def _fire(_signum: int, _frame: object) -> None:
    if _armed[0]:
        raise StepOverrun


def _alarm_usable() -> bool:
    """The interval timer can interrupt this thread: the main thread, setitimer exists, the timer is free."""
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )


@contextmanager
def alarm_scope() -> Iterator[None]:
    """Install the step alarm's SIGALRM handler once for many steps (a campaign's), and put the old one back at
    the end: each ``bounded_step`` inside then only arms and disarms the timer (two system calls, not six)."""
    if not _alarm_usable():
        yield
        return
    if _scoped[0]:  # nested: the outer scope's handler stays
        yield
        return
    old = signal.signal(signal.SIGALRM, _fire)
    _scoped[0] = True
    try:
        yield
    finally:
        _armed[0] = False
        _scoped[0] = False
        signal.signal(signal.SIGALRM, old)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with ``StepOverrun`` (main thread, interval timer free; else no-op)."""
    if not _alarm_usable():
        yield
        return
    scoped = _scoped[0]  # inside ``alarm_scope``: the handler is there already
    old = None if scoped else signal.signal(signal.SIGALRM, _fire)
    _armed[0] = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not scoped:
            signal.signal(signal.SIGALRM, old)


def bounded_step(oracle: Oracle, step: Callable[[], object], budget: Budget = DEFAULT_BUDGET) -> list[Escape]:
    """Run one step under ``budget``; the findings (``liveness``, ``crash``, ``audit``) go to ``oracle.escapes``.

    An exception from the kernel or the device is a ``crash``; a step still
    running after ``budget.seconds`` is interrupted and reported.  With an
    ``AuditWatch`` attached (``oracle.audit``), its per-step check runs too.
    Returns the findings of this call.
    """
    oracle.work.reset()
    found: list[Escape] = []
    start = time.perf_counter()
    try:
        with _deadline(budget.seconds):
            step()
    except StepOverrun:
        found.append(Escape("liveness", f"step still running after {budget.seconds:g} s: interrupted"))
    except Exception as err:  # the machine must answer hostile input with a verdict, never by crashing
        found.append(Escape("crash", f"{type(err).__name__}: {err}"))
    found += budget.judge(oracle.work, time.perf_counter() - start)
    if oracle.audit is not None:
        found += oracle.audit.after_step()
    oracle.escapes.extend(found)
    return found

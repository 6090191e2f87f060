"""The threaded engine: a poller thread that runs devices on their own.

Real NICs work concurrently with the CPU: descriptors written after the
doorbell may or may not be seen, depending on timing.  The poller gives the
sandbox that concurrency (for demos and, later, race testing); the inline
engine in ``E1000.write32`` gives determinism instead.  One poller serves
all devices: a transmit nests the sender's and the receiver's locks, and
with a single poller thread no two threads nest them in opposite order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from device.e1000 import E1000


class DevicePoller:
    """Runs ``poll()`` of every device until stopped; sleeps briefly when idle."""

    def __init__(self, devices: Sequence[E1000], idle_sleep_s: float = 20e-6) -> None:
        self.devices = list(devices)
        self.idle_sleep_s = idle_sleep_s
        self.rounds = 0
        self.last_busy_round = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nic-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            work = sum(dev.poll() for dev in self.devices)
            self.rounds += 1
            if work:
                self.last_busy_round = self.rounds
            else:
                time.sleep(self.idle_sleep_s)

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait for a whole poller round, begun after this call, in which no device had work.

        Checking each device's state in turn is not enough: while one is
        checked idle, another may be handing it frames.  A round polls every
        device, so an idle round that started after the caller stopped
        producing means nothing is left anywhere.  False if ``timeout_s`` passed first.
        """
        deadline = time.monotonic() + timeout_s
        start = self.rounds
        while time.monotonic() < deadline:
            done = self.rounds
            if done >= start + 2 and self.last_busy_round < done:
                return True
            time.sleep(self.idle_sleep_s)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> DevicePoller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

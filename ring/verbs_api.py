"""The verbs system-call surface: what a tenant, the kernel's gate and the RDMA device promise each other.

Three actors meet here, as in ``ring/syscalls.py`` for the e1000 side:

* ``VerbsDevice`` is the device as the kernel sees it (``driver/verbs/device.py``
  implements it with pyverbs over soft-RoCE): allocate a protection domain,
  register and deregister memory regions, describe a queue pair, post
  batches of work requests.  A raw device trusts every WR.
* ``WorkPoster`` is what a tenant posts through: the kernel's gate
  (``verifier/verbs/gate.py``, which checks first) or, with protection off,
  the device itself wrapped by ``driver/verbs/device.py``'s ``RawPoster``.
* ``QpInfo`` is what the kernel must know of a queue pair to judge a post.

Nothing here imports the rest of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ring.verbs_format import WorkBatch


@dataclass(frozen=True)
class QpInfo:
    """A queue pair as the kernel sees it: its PD, type, SGE limits and (RC) the PD of its peer."""

    qp_num: int
    pd: int
    qp_type: int
    max_send_sge: int  # as the device reports after creation (rxe may round the request up)
    max_recv_sge: int
    peer_pd: int | None = None  # RC: the connected QP's PD when it lives on this host, else None


class PostError(Exception):
    """``ibv_post_send``/``ibv_post_recv`` refused the post: nothing from WR ``index`` on was queued.

    ``index`` is -1 when the device does not say which WR it refused (pyverbs does not hand back
    ``bad_wr`` safely); posts of one WR, as the differential makes, are then unambiguous.
    """

    def __init__(self, errno: int, index: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
        self.index = index


@dataclass
class PostResult:
    """What happened to each WR of a post: handed to the device, or refused (with a reason code)."""

    posted: npt.NDArray[np.bool_]
    reason: npt.NDArray[np.uint8]  # 0 where posted; the verifier's reason code where refused
    audit_seqs: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.posted))

    @classmethod
    def all_posted(cls, n: int) -> PostResult:
        return cls(np.ones(n, dtype=bool), np.zeros(n, dtype=np.uint8))


class VerbsDevice(Protocol):
    """An RDMA device as the kernel drives it (one port, one GID)."""

    name: str

    def alloc_pd(self) -> int: ...

    def reg_mr(self, pd: int, addr: int, length: int, access: int) -> np.void:
        """Register ``[addr, addr + length)`` in ``pd``; returns a ``MR_RECORD`` row with the device's keys."""
        ...

    def dereg_mr(self, lkey: int) -> None: ...

    def qp_info(self, qp_num: int) -> QpInfo: ...

    def post_send(self, qp_num: int, batch: WorkBatch) -> None:
        """Queue every WR of the batch, in order; raises ``PostError`` if the device refuses one."""
        ...

    def post_recv(self, qp_num: int, batch: WorkBatch) -> None: ...


class CompletionSource(Protocol):
    """A completion queue: up to ``max_entries`` completions as ``WORK_COMPLETION`` rows (``ibv_poll_cq``)."""

    def poll(self, max_entries: int) -> npt.NDArray[np.void]: ...


class WorkPoster(Protocol):
    """What a tenant posts through."""

    def post_send(self, qp_num: int, batch: WorkBatch) -> PostResult: ...

    def post_recv(self, qp_num: int, batch: WorkBatch) -> PostResult: ...

"""The straight line through a doorbell's costs: ``cost(n) = a + b·n``, fitted by least squares.

``a`` is what one doorbell costs whatever it brings (the fixed cost of
crossing into the kernel and back); ``b`` is what each new descriptor adds.
The batch sizes span several decades (1 to 4096), and a point's noise grows
with its cost, so an ordinary fit would let the largest batches decide the
line alone and leave ``a`` to chance.  Each row of the system is therefore
divided by its measured cost before ``numpy.linalg.lstsq`` solves it: the fit
minimises the *relative* residuals, every batch size counts the same, which
is also what the log-log plot of the curve shows.

``a / b`` is the batch at which the fixed cost equals the descriptors' cost:
below it a doorbell is mostly overhead, above it mostly work (the break-even
batch of an io_uring submission, or of any batched system call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class FitError(ValueError):
    """The points cannot determine a line (fewer than two batch sizes, or a cost that is not positive)."""


@dataclass(frozen=True)
class LinearFit:
    """``cost(n) = a + b·n`` over the measured points, and how far each point lies from it."""

    a: float  # fixed cost per doorbell (the unit of ``cost``)
    b: float  # cost per descriptor
    batch: F64  # n of each point
    cost: F64  # measured cost of each point
    fitted: F64  # a + b·n at each point

    @property
    def residual(self) -> F64:
        """Measured minus fitted, in the unit of ``cost``."""
        return self.cost - self.fitted

    @property
    def relative_residual(self) -> F64:
        """Measured minus fitted, as a fraction of the measured cost (what the fit minimised)."""
        return self.residual / self.cost

    @property
    def relative_rms(self) -> float:
        """Root mean square of the relative residuals: 0.05 means the line misses a typical point by 5%."""
        return float(np.sqrt(np.mean(self.relative_residual**2)))

    @property
    def crossover(self) -> float | None:
        """``a / b``: the batch whose descriptors cost as much as its doorbell (None when ``b`` is not positive)."""
        if self.b <= 0 or self.a <= 0:
            return None
        return self.a / self.b

    def per_descriptor(self, n: F64) -> F64:
        """The model's cost per descriptor at batch ``n``: ``a/n + b``, the amortisation curve."""
        return self.a / n + self.b


def fit_cost(batch: npt.ArrayLike, cost: npt.ArrayLike) -> LinearFit:
    """Fit ``cost = a + b·batch`` minimising the relative residuals (each row weighted by 1/cost)."""
    n = np.asarray(batch, dtype=np.float64)
    y = np.asarray(cost, dtype=np.float64)
    if n.shape != y.shape or n.ndim != 1:
        raise FitError("batch sizes and costs must be two lists of the same length")
    if np.unique(n).size < 2:
        raise FitError("a line needs points at two batch sizes at least")
    if not (np.all(np.isfinite(y)) and np.all(y > 0) and np.all(n > 0)):
        raise FitError("every batch size and cost must be a positive finite number")
    design = np.column_stack((np.ones_like(n), n)) / y[:, None]
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise FitError("the fit did not converge to finite numbers")
    return LinearFit(float(a), float(b), n, y, a + b * n)


def log_spaced(largest: int, per_octave: int = 2) -> list[int]:
    """Batch sizes 1 … ``largest``, ``per_octave`` points per doubling (rounded, distinct, ``largest`` included)."""
    if largest < 1 or per_octave < 1:
        raise ValueError("the largest batch and the points per octave must be at least 1")
    count = math.ceil(math.log2(largest) * per_octave) + 1 if largest > 1 else 1
    sizes = set(np.rint(np.geomspace(1, largest, count)).astype(np.int64).tolist())
    return sorted(sizes | {1, largest})

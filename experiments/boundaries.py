"""Group-sequential boundaries from an O'Brien-Fleming-type alpha-spending function (Lan-DeMets).

The test may look at the data whenever it likes, as long as each look spends only the alpha that
the spending function allows at its information fraction ``t`` (the share of the planned
information seen so far): ``alpha(t) = 2 - 2 * Phi(Phi^-1(1 - alpha / 2) / sqrt(t))``, which
spends almost nothing early and all of ``alpha`` at ``t = 1``. The boundary of look ``k`` is the
``b_k`` for which the chance of crossing it at look ``k``, having crossed no earlier boundary, is
``alpha(t_k) - alpha(t_{k-1})`` under no difference. That chance is computed by the standard
recursive numerical integration (Armitage, McPherson and Rowe; Jennison and Turnbull, ch. 19):
the sub-density of the statistic on the continuation region is carried from look to look on a
grid (composite Simpson's rule, :data:`GRID_POINTS` points) and ``b_k`` is found by bisection.
With the default grid the boundaries agree with published tables to about 1e-4.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

GRID_POINTS = 801  # odd, for Simpson's rule
FLOOR = -12.0  # the continuation region's lower end for a one-sided boundary
TOP = 40.0  # boundaries are searched below this (a look with no alpha to spend gets +inf)
MIN_INCREMENT = 1e-9  # information fractions closer than this are the same look
_NORMAL = NormalDist()
_ERFC = np.vectorize(math.erfc, otypes=[float])


def obf_spending(fraction: float, alpha: float) -> float:
    """The alpha the O'Brien-Fleming-type function has spent at information ``fraction`` (0..1)."""
    if fraction <= 0:
        return 0.0
    if fraction >= 1:
        return alpha
    z = _NORMAL.inv_cdf(1 - alpha / 2) / math.sqrt(fraction)
    return math.erfc(z / math.sqrt(2))  # 2 - 2 * Phi(z)


def _upper_tail(x: Floats) -> Floats:
    """``1 - Phi(x)`` for an array, accurate far into the tail."""
    return np.asarray(0.5 * _ERFC(x / math.sqrt(2)), dtype=np.float64)


def _simpson_weights(grid: Floats) -> Floats:
    """Composite Simpson weights for an evenly spaced grid with an odd number of points."""
    weights = np.ones(len(grid))
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return weights * (grid[1] - grid[0]) / 3


def _crossing(grid: Floats, density: Floats, bound: float, previous: float, current: float) -> float:
    """The chance of continuing until the previous look and then exceeding ``bound`` at this one."""
    step = math.sqrt(current - previous)
    tails = _upper_tail((bound * math.sqrt(current) - grid * math.sqrt(previous)) / step)
    return float(np.sum(_simpson_weights(grid) * density * tails))


def _solve(grid: Floats, density: Floats, target: float, previous: float, current: float) -> float:
    """The boundary whose crossing chance at this look is ``target`` (bisection)."""
    if target <= 0:
        return math.inf
    low, high = -10.0, TOP
    for _ in range(80):
        middle = (low + high) / 2
        if _crossing(grid, density, middle, previous, current) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _advance(grid: Floats, density: Floats, new_grid: Floats, previous: float, current: float) -> Floats:
    """The sub-density at this look's grid of a statistic that continued past every earlier look."""
    step = math.sqrt(current - previous)
    scaled = (new_grid[:, None] * math.sqrt(current) - grid[None, :] * math.sqrt(previous)) / step
    kernel = np.exp(-0.5 * scaled**2) / math.sqrt(2 * math.pi) * math.sqrt(current) / step
    return np.asarray(kernel @ (_simpson_weights(grid) * density), dtype=np.float64)


def _region(bound: float, symmetric: bool) -> Floats:
    """The continuation region's grid below ``bound`` (and above ``-bound`` when symmetric)."""
    upper = min(bound, TOP)
    return np.linspace(-upper if symmetric else FLOOR, upper, GRID_POINTS)


@lru_cache(maxsize=256)
def _boundaries(fractions: tuple[float, ...], alpha: float, symmetric: bool) -> tuple[float, ...]:
    """The cached computation behind :func:`spending_boundaries`."""
    side = alpha / 2 if symmetric else alpha
    first = fractions[0]
    bounds = [-_NORMAL.inv_cdf(max(obf_spending(first, side), 1e-300))]
    grid = _region(bounds[0], symmetric)
    density = np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)
    previous = first
    for current in fractions[1:]:
        if current - previous < MIN_INCREMENT:
            bounds.append(bounds[-1])  # no new information: the same statistic, the same boundary
            continue
        target = obf_spending(current, side) - obf_spending(previous, side)
        bounds.append(_solve(grid, density, target, previous, current))
        new_grid = _region(bounds[-1], symmetric)
        density, grid, previous = _advance(grid, density, new_grid, previous, current), new_grid, current
    return tuple(bounds)


def spending_boundaries(
    fractions: tuple[float, ...] | list[float], alpha: float = 0.05, *, symmetric: bool = False
) -> tuple[float, ...]:
    """The z boundary at each look, given the information fractions of the looks so far.

    One-sided by default: the statistic crosses ``b_k`` upwards with total chance ``alpha`` under
    no difference. ``symmetric`` gives the two-sided test with boundaries ``+/-b_k`` and total
    ``alpha`` (half on each side), as published tables list them. Fractions must not decrease;
    they are clipped to ``(0, 1]``. A look with no alpha left to spend gets ``+inf``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}.")
    clipped = tuple(round(min(max(value, 1e-6), 1.0), 9) for value in fractions)
    if not clipped:
        return ()
    if any(later < earlier for earlier, later in itertools.pairwise(clipped)):
        raise ValueError(f"Information fractions cannot decrease: {list(fractions)}.")
    return _boundaries(clipped, alpha, symmetric)


def equal_fractions(looks: int) -> tuple[float, ...]:
    """Equally spaced information fractions ``1/K, 2/K, ..., 1``."""
    return tuple((k + 1) / looks for k in range(looks))


def look_boundary(
    look: int, planned_looks: int, fractions: list[float] | None = None, alpha: float = 0.05
) -> float | None:
    """The z boundary at ``look`` given the information fractions of looks ``1..look``; ``None`` before look 1.

    Without ``fractions`` the looks are taken as equally spaced. The last planned look, and any
    look past it, has fraction 1: it spends what alpha is left.
    """
    if look < 1:
        return None
    spread = list(fractions) if fractions is not None else list(equal_fractions(planned_looks))[:look]
    spread += [1.0] * (look - len(spread))
    spread = [1.0 if k + 1 >= planned_looks else value for k, value in enumerate(spread[:look])]
    return spending_boundaries(spread, alpha)[look - 1]

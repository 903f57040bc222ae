"""Ramp planning for current sources: breakpoints no farther apart than a step, at a bounded rate.

Pure functions, shared by every :class:`~labnr.drivers.flux.CurrentSource`
adapter: a source with hardware slopes (GS200 programs) runs the plan's
breakpoints as slopes of ``interval`` each; a source without steps to each
breakpoint and waits ``interval``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RampPlan", "plan_ramp"]


@dataclass(frozen=True)
class RampPlan:
    """Breakpoints of a ramp, traversed at a constant pace.

    The output moves linearly from one breakpoint to the next in
    ``interval`` seconds (a source without hardware slopes steps to each
    breakpoint and waits ``interval``).

    Attributes
    ----------
    start : float
        Level before the ramp, A.
    levels : tuple of float
        Breakpoints after ``start``, A; the last one is the (quantised) target.
    interval : float
        Time per breakpoint, s.
    """

    start: float
    levels: tuple[float, ...]
    interval: float

    @property
    def duration(self) -> float:
        """Duration of the whole ramp, s."""
        return len(self.levels) * self.interval

    @property
    def max_step(self) -> float:
        """Largest change between consecutive breakpoints, A."""
        points = (self.start, *self.levels)
        return max((abs(b - a) for a, b in zip(points, points[1:], strict=False)), default=0.0)

    @property
    def rate(self) -> float:
        """Largest slope of the ramp, A/s."""
        return self.max_step / self.interval if self.levels else 0.0


def _quantise(level: float, resolution: float) -> float:
    if resolution <= 0:
        return level
    return round(round(level / resolution) * resolution, 15)


def plan_ramp(
    start: float,
    target: float,
    *,
    rate: float,
    max_step: float,
    resolution: float = 0.0,
    min_interval: float = 0.0,
    max_interval: float = math.inf,
    time_resolution: float = 0.0,
) -> RampPlan:
    """Plan a ramp that never exceeds ``rate`` nor ``max_step``.

    The span is cut into equal steps no larger than ``max_step`` (and no
    larger than ``rate * max_interval``) less one ``resolution``, so that the
    breakpoints, quantised to the source's resolution, still differ by at
    most ``max_step``; the interval per step is the largest step
    divided by ``rate``, rounded up to the source's ``time_resolution`` and
    raised to ``min_interval`` if shorter (both make the ramp slower than
    ``rate``, never faster).

    .. math::

        n = \\lceil |I_t - I_0| / s \\rceil, \\qquad
        T = \\max\\left(\\frac{\\max_k |I_k - I_{k-1}|}{r}, T_{min}\\right)

    Parameters
    ----------
    start, target : float
        Present and requested level, A.
    rate : float
        Largest slope, A/s (> 0).
    max_step : float
        Largest change between breakpoints, A (> 0).
    resolution : float
        Level resolution of the source, A (0: exact).
    min_interval, max_interval : float
        Shortest and longest time the source allows per step, s.
    time_resolution : float
        Resolution of the source's step time, s (0: exact).

    Returns
    -------
    RampPlan
        An empty plan when ``target`` quantises to ``start``.

    Raises
    ------
    ValueError
        If the rate or step is not positive, or if ``max_step`` or
        ``rate * max_interval`` is below twice the resolution.
    """
    if not (rate > 0 and max_step > 0):
        raise ValueError(f"plan_ramp: rate={rate!r} A/s and max_step={max_step!r} A must be > 0")
    cap = min(max_step, rate * max_interval)
    if resolution > 0 and cap < 2 * resolution:
        raise ValueError(
            f"plan_ramp: the largest allowed step min(max_step={max_step:g} A, rate*max_interval="
            f"{rate * max_interval:g} A) must be at least twice the source resolution "
            f"{resolution:g} A"
        )
    goal = _quantise(target, resolution)
    delta = goal - start
    if abs(delta) <= max(resolution / 2, 1e-15):
        return RampPlan(start, (), max(min_interval, 0.0))
    # Quantising moves a breakpoint by at most resolution / 2, so equal steps of
    # cap - resolution stay within cap once quantised.
    n = max(1, math.ceil(abs(delta) / (cap - resolution) - 1e-12))
    levels = tuple(_quantise(start + delta * k / n, resolution) for k in range(1, n)) + (goal,)
    plan = RampPlan(start, levels, 1.0)
    interval = max(plan.max_step / rate, min_interval)
    if time_resolution > 0:
        interval = round(math.ceil(interval / time_resolution - 1e-12) * time_resolution, 12)
    return RampPlan(start, levels, min(interval, max_interval))

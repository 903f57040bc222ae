"""The GS200's program (sequence) runner, evaluated lazily on the virtual clock.

A GS200 program is a list of step levels. When run, step ``k`` starts at
``start + k * interval`` and the output slopes linearly from the previous
level to the step's level in ``slope`` seconds (a jump when slope is 0), then
holds until the next step. Without repeat the program ends after
``len(steps) * interval``; with repeat it cycles forever. QCoDeS's
``YokogawaGS200`` uses a one-step program for its hardware ramps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["GS200Program"]


@dataclass
class GS200Program:
    """A running program.

    Attributes
    ----------
    steps : tuple of float
        Step levels in V or A.
    start : float
        Virtual time at which the program started, s (shifted by pauses).
    start_level : float
        Level before the first step.
    interval : float
        Step duration, s.
    slope : float
        Slope time within each step, s (clipped to ``interval``).
    repeat : bool
        Cycle forever instead of ending after the last step.
    paused_at : float or None
        Virtual time of a pause in effect.
    """

    steps: tuple[float, ...]
    start: float
    start_level: float
    interval: float
    slope: float
    repeat: bool
    paused_at: float | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("GS200Program: a program needs at least one step")
        self.slope = min(self.slope, self.interval)

    @property
    def end(self) -> float:
        """Virtual time at which the program ends (inf with repeat), s."""
        if self.repeat:
            return math.inf
        return self.start + len(self.steps) * self.interval

    @property
    def cycle(self) -> float:
        """Duration of one pass through the steps, s."""
        return len(self.steps) * self.interval

    def _target(self, k: int) -> float:
        return self.steps[k % len(self.steps)]

    def _previous(self, k: int) -> float:
        return self.start_level if k == 0 else self._target(k - 1)

    def level_at(self, t: float) -> float:
        """Program level at virtual time ``t``."""
        if t < self.start:
            return self.start_level
        k = int((t - self.start) // self.interval)
        if not self.repeat and k >= len(self.steps):
            return self.steps[-1]
        tau = t - self.start - k * self.interval
        previous, target = self._previous(k), self._target(k)
        if self.slope <= 0 or tau >= self.slope:
            return target
        return previous + (target - previous) * tau / self.slope

    def segments(self, t0: float, t1: float) -> Iterator[tuple[float, float, float]]:
        """Slopes (or jumps) of the program overlapping ``[t0, t1]``, clipped to it.

        Yields
        ------
        start, end, level : float
            The level moves linearly from its value at ``start`` to ``level``
            at ``end`` (``start == end`` for a jump). Between segments the
            level is constant.
        """
        t1 = min(t1, self.end)
        if t1 <= t0:
            return
        k = max(0, int((t0 - self.start) // self.interval))
        while True:
            if not self.repeat and k >= len(self.steps):
                return
            seg_start = self.start + k * self.interval
            if seg_start > t1:
                return
            seg_end = seg_start + self.slope
            if seg_end >= t0:  # boundary segments may repeat; re-applying them is a no-op
                end = min(seg_end, t1)
                # At the program's end every slope is complete: ``start + n * interval``
                # may fall an ulp short of ``seg_start + slope`` for the last step.
                done = end >= seg_end or end >= self.end
                level = self._target(k) if done else self.level_at(end)
                yield max(seg_start, t0), end, level
            k += 1

"""Current sources for the flux bias: the interface, ramp planning and verified ramps.

:class:`CurrentSource` is what :class:`~labnr.drivers.flux.FluxBias` drives
(re-exported there). Its :meth:`CurrentSource.verified_ramp` is the one ramp
procedure every adapter runs; an adapter supplies how one segment of
breakpoints is executed (:meth:`CurrentSource.run_segment`: GS200 hardware
programs, or software steps) and the level resolution of its present range.

A verified ramp never trusts a level it has not read back:

1. **Verified start**: read until two consecutive reads agree within the
   present range's resolution (at most :attr:`CurrentSource.max_level_reads`).
2. **Record check**: refused (nothing written) if that level is ``max_step``
   (less two resolution steps) from what labnr last left the output at
   (:attr:`CurrentSource.commanded`, a span while a segment runs; a session
   persists it across processes). With no record, a non-zero level is adopted
   as read unless :attr:`CurrentSource.adopt_unknown_level` is False.
3. **Plan from the verified level** (:func:`plan_ramp`): the first breakpoint
   within ``max_step`` of it and of the record, every step at most
   ``max_step``, every slope at most ``rate``; the plan checks itself.
4. **Verified segments**: the first breakpoint alone, then segments of at most
   :attr:`CurrentSource.max_program_steps`; after each the level must read the
   planned breakpoint within the resolution, or the ramp stops there (held).

Refusals raise :class:`LevelMismatch`, one line naming the instrument and the
values; it is never retried as a transient fault (:mod:`labnr.drivers.resilience`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from qcodes.instrument import InstrumentBase

__all__ = [
    "CurrentSource",
    "LevelMismatch",
    "RampPlan",
    "allowed_first_step",
    "plan_ramp",
    "ramp_segments",
    "read_agreeing",
]


class LevelMismatch(RuntimeError):
    """The level read back cannot be trusted; the ramp was refused or stopped, the output holds."""

    #: Not a bus fault: :func:`labnr.drivers.resilience.call_with_retries` never retries it.
    transient = False


def _within(a: float, b: float, resolution: float) -> bool:
    """``a`` and ``b`` agree within one resolution step (and are finite)."""
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= resolution * (1 + 1e-9) + 1e-15


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
    def steps(self) -> tuple[float, ...]:
        """Absolute change into each breakpoint (the first from ``start``), A."""
        points = (self.start, *self.levels)
        return tuple(abs(b - a) for a, b in zip(points, points[1:], strict=False))

    @property
    def max_step(self) -> float:
        """Largest change between consecutive breakpoints, A."""
        return max(self.steps, default=0.0)

    @property
    def rate(self) -> float:
        """Largest slope of the ramp, A/s."""
        return self.max_step / self.interval if self.levels else 0.0


def _quantise(level: float, resolution: float) -> float:
    if resolution <= 0:
        return level
    return round(round(level / resolution) * resolution, 15)


def _equal_steps(start: float, goal: float, cap: float, resolution: float) -> tuple[float, ...]:
    """Quantised breakpoints from ``start`` (excluded) to ``goal`` in equal steps <= ``cap``."""
    delta = goal - start
    # Quantising moves a breakpoint by at most resolution / 2, so equal steps of
    # cap - resolution stay within cap once quantised.
    n = max(1, math.ceil(abs(delta) / (cap - resolution) - 1e-12))
    return tuple(_quantise(start + delta * k / n, resolution) for k in range(1, n)) + (goal,)


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
    first_step: float | None = None,
) -> RampPlan:
    """Plan a ramp from ``start`` that never exceeds ``rate`` nor ``max_step``.

    The span is cut into equal steps no larger than ``max_step`` (and no
    larger than ``rate * max_interval``) less one ``resolution``, so that the
    breakpoints, quantised to the source's resolution, still differ by at
    most ``max_step``; the interval per step is the largest step
    divided by ``rate``, rounded up to the source's ``time_resolution`` and
    raised to ``min_interval`` if shorter (both make the ramp slower than
    ``rate``, never faster). With ``first_step``, the first breakpoint is at
    most that far from ``start`` (a shorter first step, then equal steps).
    The plan is checked against all of this before it is returned.

    .. math::

        n = \\lceil |I_t - I_0| / s \\rceil, \\qquad
        T = \\max\\left(\\frac{\\max_k |I_k - I_{k-1}|}{r}, T_{min}\\right)

    Parameters
    ----------
    start, target : float
        Present (verified) and requested level, A.
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
    first_step : float, optional
        Largest change from ``start`` to the first breakpoint, A (<= ``max_step``).

    Returns
    -------
    RampPlan
        An empty plan when ``target`` quantises to ``start``.

    Raises
    ------
    ValueError
        If the rate or step is not positive, or if ``max_step``,
        ``rate * max_interval`` or ``first_step`` is below twice the resolution.
    """
    if not (rate > 0 and max_step > 0):
        raise ValueError(f"plan_ramp: rate={rate!r} A/s and max_step={max_step!r} A must be > 0")
    cap = min(max_step, rate * max_interval)
    first = cap if first_step is None else min(cap, first_step)
    if not first > 0 or (resolution > 0 and first < 2 * resolution):
        raise ValueError(
            f"plan_ramp: the largest allowed step min(max_step={max_step:g} A, rate*max_interval="
            f"{rate * max_interval:g} A, first_step={first_step!r} A) must be at least twice the "
            f"source resolution {resolution:g} A"
        )
    goal = _quantise(target, resolution)
    if abs(goal - start) <= max(resolution / 2, 1e-15):
        return RampPlan(start, (), max(min_interval, 0.0))
    levels = _equal_steps(start, goal, cap, resolution)
    if abs(levels[0] - start) > first:  # a shorter first step, then equal steps
        head = _quantise(start + math.copysign(first - resolution, goal - start), resolution)
        levels = (head, *_equal_steps(head, goal, cap, resolution))
    interval = max(RampPlan(start, levels, 1.0).max_step / rate, min_interval)
    if time_resolution > 0:
        interval = round(math.ceil(interval / time_resolution - 1e-12) * time_resolution, 12)
    plan = RampPlan(start, levels, min(interval, max_interval))
    _check_plan(plan, goal, rate, max_step, first)
    return plan


def _check_plan(plan: RampPlan, goal: float, rate: float, max_step: float, first: float) -> None:
    """The planner's own assertions (kept under ``python -O``); RuntimeError if one fails."""
    steps, slack = plan.steps, 1e-15  # A: float rounding of levels up to 1 A
    problems = [
        f"first step {steps[0]:.6g} A > {first:.6g} A"
        if steps[0] > first * (1 + 1e-12) + slack
        else "",
        f"step {plan.max_step:.6g} A > max_step {max_step:.6g} A"
        if plan.max_step > max_step * (1 + 1e-12) + slack
        else "",
        f"slope {plan.rate:.6g} A/s > rate {rate:.6g} A/s" if plan.rate > rate * (1 + 1e-9) else "",
        f"last breakpoint {plan.levels[-1]!r} A is not the target {goal!r} A"
        if plan.levels[-1] != goal
        else "",
    ]
    if any(problems):
        raise RuntimeError(
            f"plan_ramp: the plan from {plan.start!r} A breaks its own limits: "
            + "; ".join(p for p in problems if p)
        )


def ramp_segments(levels: Sequence[float], size: int) -> Iterator[tuple[float, ...]]:
    """The first breakpoint alone, then the rest in runs of at most ``size`` (>= 1)."""
    if size < 1:
        raise ValueError(f"ramp_segments: size={size!r} must be >= 1")
    if levels:
        yield (levels[0],)
    for first in range(1, len(levels), size):
        yield tuple(levels[first : first + size])


def read_agreeing(
    read: Callable[[], float], resolution: float, *, where: str, max_reads: int = 5
) -> float:
    """Read a level until two consecutive reads agree within ``resolution``; the last read.

    Parameters
    ----------
    read : callable
        One level read, A.
    resolution : float
        Level resolution of the present range, A.
    where : str
        Instrument name for the message.
    max_reads : int
        Reads allowed in all (>= 2).

    Raises
    ------
    LevelMismatch
        If no two consecutive reads of ``max_reads`` agree (the reads are in the message).
    """
    if max_reads < 2:
        raise ValueError(f"read_agreeing: max_reads={max_reads!r} must be >= 2")
    reads = [float(read())]
    while len(reads) < max_reads:
        reads.append(float(read()))
        if _within(reads[-2], reads[-1], resolution):
            return reads[-1]
    shown = ", ".join(f"{r:.9g}" for r in reads)
    raise LevelMismatch(
        f"{where}: {len(reads)} level reads never agreed within the resolution {resolution:g} A "
        f"({shown} A); nothing written, output left as it is: check the instrument and its "
        "connection, then try again"
    )


def allowed_first_step(
    level: float,
    commanded: tuple[float, float] | None,
    max_step: float,
    resolution: float,
    *,
    where: str,
) -> float:
    """Largest first step from a verified ``level`` given the record of what labnr set, A.

    ``max_step`` less the distance of ``level`` from the ``commanded`` span
    (0 inside it; no record: ``max_step``), so that the first breakpoint is
    within ``max_step`` of the level read and of the level labnr set.

    Raises
    ------
    LevelMismatch
        If that leaves less than two resolution steps (the planner's margin):
        ``level`` and the record are ``max_step`` apart or more.
    """
    if commanded is None:
        return max_step
    low, high = commanded
    distance = max(low - level, level - high, 0.0)
    first = max_step - distance
    if first >= 2 * resolution and first > 0:
        return first
    said = f"{low:.9g}" if low == high else f"between {low:.9g} and {high:.9g}"
    raise LevelMismatch(
        f"{where}: the level reads {level:.9g} A but labnr last set {said} A, {distance:.3g} A "
        f"apart, more than max_step={max_step:g} A allows; ramp refused, nothing written, "
        "output left as it is: check the instrument; if the level was changed on purpose, "
        "adopt it as read (`labnr flux adopt CONFIG`, or re-connect without a record)"
    )


class CurrentSource(ABC):
    """What :class:`~labnr.drivers.flux.FluxBias` needs from a DC current source.

    An adapter wraps one QCoDeS instrument (a Yokogawa GS200, later a
    Keithley 2450 or a QDevil QDAC-II channel). It executes segments of a
    ramp (:meth:`run_segment`), because only the source knows whether it can
    slope in hardware (GS200 programs, QDAC-II slew rate) or must step in
    software; the planning and the read-back checks are shared
    (:meth:`verified_ramp`, see the module doc). The adapter never checks
    labnr's current limits: :class:`~labnr.drivers.flux.FluxBias` does that
    before calling it.
    """

    #: Shortest and longest time per breakpoint and its resolution, s.
    min_interval: ClassVar[float] = 0.0
    max_interval: ClassVar[float] = math.inf
    time_resolution: ClassVar[float] = 0.0
    #: Breakpoints per segment (one hardware program); the level is verified after each.
    max_program_steps: ClassVar[int] = 1000
    #: Level reads allowed for two consecutive ones to agree.
    max_level_reads: ClassVar[int] = 5
    _commanded: tuple[float, float] | None = None
    #: No record (:attr:`commanded` None): may a ramp start from a non-zero level as
    #: read? False refuses a level nobody vouched for (a read-back lie looks true).
    adopt_unknown_level: bool = True
    #: Called with (low, high) A when :attr:`commanded` changes, before it is made true.
    on_commanded: Callable[[float, float], None] | None = None

    @property
    @abstractmethod
    def instrument(self) -> InstrumentBase:
        """The wrapped QCoDeS instrument (snapshotted with the flux bias)."""

    @abstractmethod
    def check_connected(self) -> None:
        """Read the source's state at connect and refuse what cannot be taken over.

        Must not write anything that changes the output, its level, mode or range.
        """

    @abstractmethod
    def output_enabled(self) -> bool:
        """Whether the output is on."""

    @abstractmethod
    def level(self) -> float:
        """Programmed output level, A (what flows when the output is on); one read."""

    @abstractmethod
    def level_limit(self) -> float:
        """Largest ``|level|`` the source can program in its present range, A."""

    @abstractmethod
    def resolution(self, limit: float | None = None) -> float:
        """Level resolution, A, of the present current range.

        With ``limit``: of the range :meth:`enable_output` selects for
        ``|limit|`` when the output is off (read only).
        """

    @abstractmethod
    def enable_output(self, limit: float) -> None:
        """Switch the output on at 0 A, ready to source up to ``|limit|``.

        Called only with the output off: select current mode and a range
        covering ``limit``, program 0 A, then switch on. Implementations call
        :meth:`_note_level` with 0.
        """

    @abstractmethod
    def disable_output(self) -> None:
        """Switch the output off; refuse (raise, output left on) unless the level reads 0 A."""

    @abstractmethod
    def run_segment(self, levels: Sequence[float], interval: float) -> None:
        """Move through the breakpoints ``levels``, ``interval`` s each; block until done.

        Linearly from breakpoint to breakpoint (hardware slopes) or a step to
        each and a wait. On any exception while it runs (including
        KeyboardInterrupt) the source must hold its present level before the
        exception propagates.
        """

    def ramp(self, target: float, rate: float, max_step: float) -> None:
        """Move the level to ``target`` A, never faster than ``rate`` nor in steps > ``max_step``.

        Blocks until the level is reached. By default :meth:`verified_ramp`;
        an adapter may wrap it (checks, retries). On any exception the source
        holds its present level.
        """
        self.verified_ramp(target, rate, max_step)

    @property
    def commanded(self) -> tuple[float, float] | None:
        """(low, high) span of levels labnr left the output at, A; None: nothing set yet.

        One level after a completed ramp or segment; the span of the segment
        that was running when a ramp was interrupted.
        """
        return self._commanded

    def expect_level(self, level: float, high: float | None = None) -> None:
        """Record ``level`` A (or the span [level, high]) as what labnr last set (sends nothing)."""
        for value in (level, level if high is None else high):
            if not math.isfinite(value):
                raise ValueError(f"{self.instrument.name}: expected level {value!r} A not finite")
        self._note_level(float(level), None if high is None else float(high))

    def _note_level(self, low: float, high: float | None = None) -> None:
        """Record that the output was left at ``low`` A (or somewhere in [low, high])."""
        high = low if high is None else high
        self._commanded = (min(low, high), max(low, high))
        if self.on_commanded is not None:
            self.on_commanded(*self._commanded)

    def verified_level(self, resolution: float | None = None) -> float:
        """The level, read until two consecutive reads agree within the resolution, A.

        Raises
        ------
        LevelMismatch
            If :attr:`max_level_reads` reads never agree.
        """
        res = self.resolution() if resolution is None else float(resolution)
        return read_agreeing(
            self.level, res, where=self.instrument.name, max_reads=self.max_level_reads
        )

    def verified_ramp(
        self, target: float, rate: float, max_step: float, resolution: float | None = None
    ) -> RampPlan:
        """Plan from the verified level and run segment by segment, verifying each (module doc).

        Parameters
        ----------
        target, rate, max_step : float
            See :meth:`ramp`.
        resolution : float, optional
            Resolution of the present range, A (queried if None).

        Returns
        -------
        RampPlan
            The plan that was run.

        Raises
        ------
        LevelMismatch
            If the level cannot be verified or disagrees with :attr:`commanded`
            (nothing written), or a segment ends elsewhere than planned (the
            ramp stops there, the output holds).
        """
        where = self.instrument.name
        res = self.resolution() if resolution is None else float(resolution)
        start = self.verified_level(res)
        if self._commanded is None and not self.adopt_unknown_level and abs(start) >= 2 * res:
            raise LevelMismatch(f"{where}: the output is on at {start:.9g} A as read, and labnr "
                                "has no record of setting it; ramp refused, nothing written: "
                                "check it on the instrument, then `labnr flux adopt CONFIG`")
        first = allowed_first_step(start, self._commanded, max_step, res, where=where)
        plan = plan_ramp(
            start,
            target,
            rate=rate,
            max_step=max_step,
            resolution=res,
            min_interval=self.min_interval,
            max_interval=self.max_interval,
            time_resolution=self.time_resolution,
            first_step=first,
        )
        at = start
        for segment in ramp_segments(plan.levels, self.max_program_steps):
            self._note_level(at, segment[-1])  # while it runs: anywhere in between
            self.run_segment(segment, plan.interval)
            reached = self.verified_level(res)
            if not _within(reached, segment[-1], res):
                raise LevelMismatch(
                    f"{where}: after a ramp segment the level reads {reached:.9g} A instead of "
                    f"the planned {segment[-1]:.9g} A (resolution {res:g} A); ramp stopped "
                    "there, output held, nothing more written: check the instrument, then "
                    "re-connect to adopt the level as read"
                )
            at = segment[-1]
            self._note_level(at)
        return plan

    def close(self) -> None:
        """Close the wrapped instrument (never touches the output)."""
        self.instrument.close()

"""Calibration nodes, their results, and the context every node gets.

A node is one calibration step. ``run(ctx)`` measures and fits and returns a
:class:`NodeResult` (a JSON-serialisable dict, the dataset run ids behind it,
a one-line summary); ``check(ctx)`` is a cheap measurement that says whether
the stored result still holds (see :mod:`labnr.calibrate.graph` for when each
is called).

Writing nodes
-------------
A function with :func:`node`, or a :class:`Node` subclass (handy for one node
per pump tone)::

    from labnr.calibrate import (CalibrationContext, CalibrationGraph, CheckResult, Node,
                                 NodeResult, node)

    @node(max_age=6 * 3600)
    def flux_operating_point(ctx):
        \"\"\"Find the flux sweet spot.\"\"\"
        ds = sweep_flux(ctx.lab, currents)
        ctx.count_acquisition(len(currents))              # one VNA acquisition per point
        i0, f_a = fit_sweet_spot(load(ds.run_id))
        return NodeResult({"offset_current": i0, "frequency_a": f_a}, run_ids=[ds.run_id],
                          summary=f"sweet spot at {i0 * 1e6:.1f} uA")

    @flux_operating_point.checker
    def _(ctx):
        f = measure_mode_frequency(ctx.lab, "a")
        ctx.count_acquisition()
        expected = ctx.result("flux_operating_point")["frequency_a"]
        return CheckResult(abs(f - expected) < 1e6, f"mode a at {f / 1e9:.5f} GHz", {"f_a": f})

    class PumpCalibration(Node):
        depends_on = ("flux_operating_point",)

        def __init__(self, tone: str) -> None:
            super().__init__(f"pump_{tone}")
            self.tone = tone

        def run(self, ctx):
            i0 = ctx.result("flux_operating_point")["offset_current"]
            ...

    graph = CalibrationGraph([flux_operating_point, PumpCalibration("ab")])
    report = graph.run(CalibrationContext(state, lab=lab, config=cfg))

A node without a ``check`` trusts its stored result (until ``max_age``).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labnr.calibrate.state import CalibrationState, utc_now
from labnr.drivers.resilience import InstrumentFault

__all__ = [
    "CalibrationContext",
    "CheckResult",
    "FunctionNode",
    "GraphError",
    "Node",
    "NodeResult",
    "NodeTimeout",
    "is_instrument_fault",
    "node",
]


class GraphError(ValueError):
    """An invalid graph or request: unknown node or dependency, dependency cycle."""


class _CheckFault(Exception):
    """A node's check raised an instrument (or storage) fault: stop, do not run the node."""


def is_instrument_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error behind it) is a fault of the lab, not of the check's logic.

    Instrument faults (:class:`~labnr.drivers.resilience.InstrumentFault` and every
    other error of labnr's drivers, e.g. ``PNAError``), VISA and connection errors,
    and storage errors (a locked database, a full disk).
    """
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        module = type(seen).__module__ or ""
        if isinstance(seen, (InstrumentFault, OSError, TimeoutError, sqlite3.Error)) or (
            module.startswith(("labnr.drivers", "pyvisa"))
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class NodeTimeout(RuntimeError):
    """A node ran past its ``timeout`` (raised at its next acquisition or deadline check)."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a node's check.

    Attributes
    ----------
    valid
        Whether the stored result still holds.
    reason
        Why, in a few words (shown in the report).
    data
        The check measurement's numbers (stored as the node's ``last_check``).
    run_ids
        Datasets the check wrote, if any.
    """

    valid: bool
    reason: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    run_ids: tuple[int | str, ...] = ()

    @classmethod
    def ok(
        cls,
        reason: str = "",
        data: Mapping[str, Any] | None = None,
        run_ids: Sequence[int | str] = (),
    ) -> CheckResult:
        """A passed check."""
        return cls(True, reason, dict(data or {}), tuple(run_ids))

    @classmethod
    def invalid(
        cls, reason: str, data: Mapping[str, Any] | None = None, run_ids: Sequence[int | str] = ()
    ) -> CheckResult:
        """A failed check: the node must run again."""
        return cls(False, reason, dict(data or {}), tuple(run_ids))


@dataclass
class NodeResult:
    """What a node's ``run`` returns.

    Attributes
    ----------
    result
        The node's numbers (JSON-serialisable; numpy scalars and arrays are
        converted on storing). Later nodes read it with ``ctx.result(name)``.
    run_ids
        Dataset run ids behind every number in ``result``.
    summary
        One line for the report.
    failed
        Set (with :meth:`failure`) when the node could not produce a trustworthy
        result, e.g. a fit that did not converge: the graph stops as on an exception.
    reason
        Why it failed.
    """

    result: dict[str, Any]
    run_ids: list[int | str] = field(default_factory=list)
    summary: str = ""
    failed: bool = False
    reason: str = ""

    @classmethod
    def failure(
        cls,
        reason: str,
        *,
        result: Mapping[str, Any] | None = None,
        run_ids: Sequence[int | str] = (),
    ) -> NodeResult:
        """A failed run (``result`` is reported, never stored as the node's result)."""
        return cls(dict(result or {}), list(run_ids), "", True, reason)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class Node:
    """A calibration step; subclass it and define :meth:`run` (and :meth:`check`).

    Class attributes are the defaults; the constructor arguments override them.

    Parameters
    ----------
    name
        Unique name in the graph (default: the class name in snake_case).
    depends_on
        Names of the nodes whose results this node uses.
    timeout
        Wall-time limit of ``run`` in s, enforced at each
        ``ctx.count_acquisition`` and ``ctx.check_deadline()``.
    max_age
        Age in s after which the stored result is invalid without checking.
    """

    name: str = ""
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    max_age: float | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = _snake(cls.__name__)

    def __init__(
        self,
        name: str | None = None,
        *,
        depends_on: Iterable[str] | str | None = None,
        timeout: float | None = None,
        max_age: float | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        deps = self.depends_on if depends_on is None else depends_on
        self.depends_on = (deps,) if isinstance(deps, str) else tuple(deps)
        if timeout is not None:
            self.timeout = timeout
        if max_age is not None:
            self.max_age = max_age

    def check(self, ctx: CalibrationContext) -> CheckResult:
        """Is the stored result still valid? Default: trust it (no measurement)."""
        return CheckResult.ok("no check defined: stored result trusted")

    def run(self, ctx: CalibrationContext) -> NodeResult:
        """Measure and fit; return the result."""
        raise NotImplementedError(f"node {self.name!r} ({type(self).__name__}) defines no run()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} depends_on={list(self.depends_on)}>"


class FunctionNode(Node):
    """A node made from a function by :func:`node`; add a check with :meth:`checker`."""

    def __init__(
        self,
        func: Callable[[CalibrationContext], NodeResult],
        *,
        name: str | None = None,
        depends_on: Iterable[str] | str = (),
        timeout: float | None = None,
        max_age: float | None = None,
        check: Callable[[CalibrationContext], CheckResult] | None = None,
    ) -> None:
        super().__init__(
            name or func.__name__, depends_on=depends_on, timeout=timeout, max_age=max_age
        )
        self.func = func
        self.check_func = check
        self.__doc__ = func.__doc__

    def checker(
        self, func: Callable[[CalibrationContext], CheckResult]
    ) -> Callable[[CalibrationContext], CheckResult]:
        """Decorator: use ``func`` as this node's check."""
        self.check_func = func
        return func

    def check(self, ctx: CalibrationContext) -> CheckResult:
        return super().check(ctx) if self.check_func is None else self.check_func(ctx)

    def run(self, ctx: CalibrationContext) -> NodeResult:
        return self.func(ctx)


def node(
    func: Callable[[CalibrationContext], NodeResult] | None = None,
    *,
    name: str | None = None,
    depends_on: Iterable[str] | str = (),
    timeout: float | None = None,
    max_age: float | None = None,
    check: Callable[[CalibrationContext], CheckResult] | None = None,
) -> Any:
    """Make a :class:`FunctionNode` of a function: ``@node`` or ``@node(depends_on=...)``."""

    def wrap(f: Callable[[CalibrationContext], NodeResult]) -> FunctionNode:
        return FunctionNode(
            f, name=name, depends_on=depends_on, timeout=timeout, max_age=max_age, check=check
        )

    return wrap if func is None else wrap(func)


@dataclass(eq=False)
class CalibrationContext:
    """What every node gets: the lab, the state, a logger, counters, a scratch space.

    Attributes
    ----------
    state
        The calibration state (results of all nodes).
    lab
        The lab session (whatever the nodes need; the graph does not look at it).
    config
        The experiment config.
    log
        Logger for the nodes.
    clock
        Returns the current UTC time (timestamps and ``max_age``); a virtual
        lab can pass its virtual clock.
    shared
        Transient objects nodes share within one calibration (not persisted).
    acquisitions
        VNA acquisitions counted so far (all nodes, checks included).
    node
        Name of the node being checked or run, else ``None``.
    """

    state: CalibrationState
    lab: Any = None
    config: Any = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("labnr.calibrate"))
    clock: Callable[[], datetime] = utc_now
    shared: dict[str, Any] = field(default_factory=dict)
    acquisitions: int = field(default=0, init=False)
    node: str | None = field(default=None, init=False)
    _node_acquisitions: int = field(default=0, init=False, repr=False)
    _deadline: tuple[float, float] | None = field(default=None, init=False, repr=False)
    _run_ids: list[int | str] = field(default_factory=list, init=False, repr=False)
    _readable: frozenset[str] | None = field(default=None, init=False, repr=False)

    def count_acquisition(self, n: int = 1) -> None:
        """Count ``n`` VNA acquisitions (sweeps or point reads) of the current node."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"count_acquisition: n must be an integer >= 0, got {n!r}")
        self.acquisitions += n
        self._node_acquisitions += n
        self.check_deadline()

    def record_run(self, run_id: int | str) -> None:
        """Note a dataset behind the current node's result (added to its ``run_ids``)."""
        if run_id not in self._run_ids:
            self._run_ids.append(run_id)

    def result(self, node: str) -> dict[str, Any]:
        """The stored result of ``node``, which must be the current node or upstream of it."""
        if self._readable is not None and node not in self._readable:
            raise GraphError(
                f"node {self.node!r} reads the result of {node!r}, which is not among its "
                f"dependencies; add {node!r} to its depends_on"
            )
        return self.state.result(node)

    def now(self) -> datetime:
        """The current time from :attr:`clock`."""
        return self.clock()

    def check_deadline(self) -> None:
        """Raise :class:`NodeTimeout` if the running node is past its ``timeout``."""
        if self._deadline is None:
            return
        start, limit = self._deadline
        elapsed = time.perf_counter() - start
        if elapsed > limit:
            raise NodeTimeout(
                f"node {self.node!r} exceeded its timeout of {limit:g} s ({elapsed:.1f} s)"
            )

    def _enter(self, name: str, readable: frozenset[str]) -> None:
        self.node, self._readable, self._node_acquisitions = name, readable, 0
        self._deadline, self._run_ids = None, []

    def _leave(self) -> None:
        self.node, self._readable, self._deadline = None, None, None
